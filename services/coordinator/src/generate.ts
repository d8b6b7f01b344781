// JobService.Generate (evaluation through the cluster): the request is validated (bounded prompt count,
// lengths and output length; an absolute checkpoint path), enqueued as one GenerateTask on the
// cluster-wide `eval-generate` queue (bounded depth; at most `maxInFlight` requests waiting here), and
// answered with the rollout worker's result. A task still waiting after `pickupMs` while no worker took or
// finished any task of the queue during that time, and none is running one, is removed and answered
// UNAVAILABLE (no rollout worker serves the queue); a task queued behind running ones keeps waiting. One that does not
// finish in `timeoutMs` is answered DEADLINE_EXCEEDED. A client that goes away removes its task when it still waits.
// Worker answers `not-found` / `invalid-argument` become NOT_FOUND / INVALID_ARGUMENT with their message.
import { isAbsolute } from 'node:path';

import {
  DeadlineExceededError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from '@spark/runtime';
import {
  EVAL_GENERATE_QUEUE,
  GENERATE_LIMITS,
  parseGenerateTaskResult,
  parseStoredCheckpointRef,
  type GenerateTask,
  type GenerateTaskResult,
} from '@spark/contract';
import type { GenerateRequest, GenerateResponse } from '@spark/protocol';
import { createQueue, createQueueEvents, enqueueBounded } from '@spark/runtime/redis';
import type { Queue, QueueEvents } from 'bullmq';

const L = GENERATE_LIMITS;

export interface GenerateDispatcherOptions {
  readonly redisUrl: string;
  readonly prefix: string;
  /** Requests waiting for a worker's answer at once; more are refused with RESOURCE_EXHAUSTED. */
  readonly maxInFlight: number;
  /** Waiting tasks on the queue beyond which enqueueing fails (RESOURCE_EXHAUSTED). */
  readonly queueMaxDepth: number;
  /** How long a task may wait for a worker to take it, in ms (then UNAVAILABLE). */
  readonly pickupMs: number;
  /** How long a request may take in all, in ms (then DEADLINE_EXCEEDED). */
  readonly timeoutMs: number;
}

/** The problems of a GenerateRequest (empty when valid). */
export function generateRequestProblems(req: GenerateRequest): string[] {
  const problems: string[] = [];
  if (!req.checkpoint)
    problems.push(
      'checkpoint: required (an absolute directory path the rollout workers can read, or job:<jobId>[/<dir>] in the object store)',
    );
  else if (req.checkpoint.length > L.maxPathChars)
    problems.push(`checkpoint: at most ${L.maxPathChars} characters`);
  else if (req.checkpoint.startsWith('job:')) {
    try {
      parseStoredCheckpointRef(req.checkpoint);
    } catch (err) {
      problems.push(`checkpoint: ${(err as Error).message}`);
    }
  } else if (!isAbsolute(req.checkpoint))
    problems.push(
      `checkpoint: must be an absolute path (the workers' working directory is not yours) or job:<jobId>[/<dir>], got ${req.checkpoint}`,
    );
  if (req.prompts.length === 0) problems.push('prompts: at least one prompt');
  if (req.prompts.length > L.maxPrompts)
    problems.push(`prompts: at most ${L.maxPrompts} per request, got ${req.prompts.length}`);
  let total = 0;
  for (const [i, p] of req.prompts.entries()) {
    total += p.length;
    if (p.length > L.maxPromptChars) {
      problems.push(`prompts[${i}]: at most ${L.maxPromptChars} characters, got ${p.length}`);
      break;
    }
  }
  if (total > L.maxTotalChars)
    problems.push(`prompts: at most ${L.maxTotalChars} characters together, got ${total}`);
  if (req.maxNewTokens > L.maxNewTokens)
    problems.push(`maxNewTokens: at most ${L.maxNewTokens}, got ${req.maxNewTokens}`);
  if (req.tokenizer.length > L.maxPathChars) problems.push(`tokenizer: at most ${L.maxPathChars} characters`);
  return problems;
}

export class GenerateDispatcher {
  private queue: Queue<GenerateTask> | null = null;
  private events: QueueEvents | null = null;
  private opening: Promise<void> | null = null;
  private inFlight = 0;
  private seq = 0;
  private closed = false;
  /** When a worker last took or finished a task of the queue (ms since the epoch). */
  private lastServed = 0;

  constructor(private readonly options: GenerateDispatcherOptions) {}

  /** Requests waiting for an answer now. */
  get pending(): number {
    return this.inFlight;
  }

  private open(): Promise<void> {
    this.opening ??= (async () => {
      const o = this.options;
      const queue = createQueue<GenerateTask>(EVAL_GENERATE_QUEUE, {
        url: o.redisUrl,
        prefix: o.prefix,
        // results travel in the events stream: keep it short
        streams: { events: { maxLen: 1_000 } },
      });
      const events = createQueueEvents(EVAL_GENERATE_QUEUE, { url: o.redisUrl, prefix: o.prefix });
      events.on('error', () => undefined);
      // any worker taking or finishing a task shows the queue is served (see the pick-up bound)
      const served = () => (this.lastServed = Date.now());
      events.on('active', served);
      events.on('completed', served);
      events.on('failed', served);
      this.queue = queue;
      this.events = events;
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    })().catch((err: unknown) => {
      this.opening = null;
      throw new UnavailableError(
        `cannot open the ${EVAL_GENERATE_QUEUE} queue: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
    return this.opening;
  }

  /** Serves one request; `cancelled()` is polled so a departed client's waiting task is removed. */
  async generate(req: GenerateRequest, cancelled: () => boolean = () => false): Promise<GenerateResponse> {
    const problems = generateRequestProblems(req);
    if (problems.length) throw new InvalidArgumentError('invalid generate request', problems);
    if (this.closed) throw new UnavailableError('the coordinator is shutting down');
    if (this.inFlight >= this.options.maxInFlight)
      throw new ResourceExhaustedError(
        `${this.options.maxInFlight} generate requests are already waiting; send fewer at once`,
      );
    this.inFlight++;
    try {
      await this.open();
      return await this.dispatch(req, cancelled);
    } finally {
      this.inFlight--;
    }
  }

  private async dispatch(req: GenerateRequest, cancelled: () => boolean): Promise<GenerateResponse> {
    const o = this.options;
    const queue = this.queue as Queue<GenerateTask>;
    const events = this.events as QueueEvents;
    let out: GenerateTaskResult;
    const task: GenerateTask = {
      checkpoint: req.checkpoint,
      prompts: req.prompts,
      maxNewTokens: req.maxNewTokens || L.defaultMaxNewTokens,
      tokenizer: req.tokenizer,
    };
    const id = `gen-${Date.now().toString(36)}-${process.pid}-${++this.seq}`;
    // listen before enqueueing, so the answer cannot be missed; every path below removes the listeners
    let settle!: (r: { ok: GenerateTaskResult } | { failed: string }) => void;
    const answer = new Promise<{ ok: GenerateTaskResult } | { failed: string }>((r) => (settle = r));
    const onCompleted = (args: { returnvalue: unknown }) => {
      try {
        settle({ ok: parseGenerateTaskResult(args.returnvalue) });
      } catch (err) {
        settle({ failed: err instanceof Error ? err.message : String(err) });
      }
    };
    const onFailed = (args: { failedReason: string }) => settle({ failed: args.failedReason });
    // per-job events ("completed:<id>") are not in QueueEvents' typed listener map
    const emitter = events as unknown as NodeJS.EventEmitter;
    emitter.on(`completed:${id}`, onCompleted);
    emitter.on(`failed:${id}`, onFailed);
    let done = false;
    const t0 = Date.now();
    try {
      await enqueueBounded(queue, 'generate', task, {
        jobId: id,
        maxDepth: o.queueMaxDepth,
        // a worker that dies mid-task leaves it stalled; another worker retries it once
        attempts: 2,
        backoff: { type: 'fixed', delay: 100 },
        removeOnComplete: { age: 60, count: 1_000 },
        removeOnFail: { age: 3_600, count: 1_000 },
      });
      // until answered: watch for the client going away, no worker taking the task, the overall bound
      const watch = (async (): Promise<never> => {
        let taken = false;
        let nextCheck = 0;
        for (;;) {
          await new Promise((r) => setTimeout(r, 100));
          if (done) return new Promise<never>(() => undefined);
          const waited = Date.now() - t0;
          if (waited > o.timeoutMs) {
            await queue.remove(id).catch(() => undefined); // a task a worker still holds stays
            throw new DeadlineExceededError(
              `the generation task did not finish within ${o.timeoutMs / 1000} s`,
            );
          }
          const gone = cancelled();
          const idle = Date.now() - Math.max(t0, this.lastServed);
          if (taken || (!gone && (idle <= o.pickupMs || Date.now() < nextCheck))) continue;
          nextCheck = Date.now() + 1_000; // Redis is asked at most once a second per request
          const state = await queue.getJobState(id).catch(() => 'unknown');
          if (state === 'waiting' || state === 'prioritized' || state === 'delayed') {
            // queued behind tasks that workers are still running: the queue is served, keep waiting
            if (!gone && (await queue.getActiveCount().catch(() => 0)) > 0) continue;
            await queue.remove(id).catch(() => undefined);
            if (gone) throw new UnavailableError('the client went away');
            throw new UnavailableError(
              `no rollout worker took the generation task within ${o.pickupMs / 1000} s: ` +
                'are rollout workers running on this cluster?',
            );
          }
          // taken by a worker (or finished): let it finish, only the overall bound applies now
          taken = true;
        }
      })();
      watch.catch(() => undefined);
      const r = await Promise.race([answer, watch]);
      if ('failed' in r)
        throw new UnavailableError(`the generation task failed on a rollout worker: ${r.failed}`);
      out = r.ok;
    } finally {
      done = true;
      emitter.off(`completed:${id}`, onCompleted);
      emitter.off(`failed:${id}`, onFailed);
    }
    if ('error' in out) {
      if (out.error.code === 'not-found') throw new NotFoundError(out.error.message);
      throw new InvalidArgumentError('the rollout worker refused the request', [out.error.message]);
    }
    return {
      outputs: [...out.outputs],
      tooLong: out.tooLong,
      outputTokens: out.outputTokens,
      worker: out.worker,
      checkpointDir: out.checkpointDir,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => undefined);
    await Promise.all([this.events?.close(), this.queue?.close()]);
  }
}
