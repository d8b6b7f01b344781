// The job driver: one async loop per running job. It turns the job's spec into work on the job's queues
// and waits (bounded by the phase time-out, checking cancellation) for the workers' results in Redis. The
// waits are event-driven: the driver follows the BullMQ events of its job's queues (QueueEvents), and each
// `completed` (a verify shard, a synthesis, a learner update) or `failed` event wakes it to re-check the
// result in Redis at once; a slow poll (`pollMs`) is the safety net for a missed event. The phases:
//   warm-up   warmupSteps supervised LearnTasks (phase 'warmup', SFT pairs from worked solutions);
//   eval      before RL, every evalInterval steps and after the last step (greedy, G = 1, no update);
//   step t    policy phase: B prompts → rollout shards → verified groups;
//             synthesis (spark, grpo-judge): recycle the verified groups, maybe release a reward batch;
//             policy update (spark, grpo): LearnTask "<t>/policy" on the policy groups;
//             reward phase (spark, grpo-judge, when released): the B released items sampled with the
//             newest policy, verified, LearnTask "<t>/reward".
// grpo-judge samples and verifies the policy phase (its groups feed recycling, judge items only) but never
// trains on it. Every id is deterministic, so re-running a step after a restart re-uses what was already
// done (BullMQ dedupes task ids; the learner and synthesis return their stored results). The driver saves
// a resume cursor in the job hash after each warm-up step, the first eval and each RL step.
//
// Learner failover: a learner that restarts (crash, eviction) reloads the job from its newest complete
// checkpoint (written at a step end) and records where in `<p>:job:<id>:resumed`. When the policy version
// it publishes is below the one the driver expects, the driver rewinds the job to that point instead of
// failing: the cursor goes back to the step after the checkpoint, the tasks of the abandoned steps are
// discarded by id (removed, and removed again before the same id is re-enqueued, once no worker holds it),
// their groups, synthesis and learner results are deleted, the recycling FIFO buffer is restored from its
// copy taken before that step's synthesis, and an event lists the abandoned updates. The data order and
// every sampling seed are functions of (seed, step), so the re-run steps see the same prompts.
import type { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import {
  CancelledError,
  DeadlineExceededError,
  describeError,
  FailedPreconditionError,
  InvalidArgumentError,
} from '@spark/runtime';
import {
  groupIdOf,
  parseLearnerResume,
  synthesisTaskId,
  jobKeys,
  parseDriverCursor,
  parseJson,
  parseLearnResult,
  parseSynthesisResult,
  parseVerifiedGroup,
  queueName,
  type DriverCursor,
  type LearnHyper,
  type LearnerResume,
  type LearnResult,
  type LearnTask,
  type PhaseName,
  type PromptItem,
  type QueueRole,
  type RolloutTask,
  type SynthesisResult,
  type SynthesisTask,
  type VerifiedGroup,
} from '@spark/contract';
import { JobEventType, JobState, Phase, type JobSpec } from '@spark/protocol';
import { COMPLETED_KEPT_S, createQueue, createQueueEvents, enqueueBounded } from '@spark/runtime/redis';
import type { ObjectStore } from '@spark/runtime/storage';
import type { TemplateVariant } from '@spark/method/templates';

import type { CoordinatorConfig } from './config.js';
import type { CoordinatorMetrics } from './metrics.js';
import {
  aggregateEval,
  aggregatePhase,
  buildEvalItems,
  builtinDataset,
  epochOf,
  epochOrder,
  estimateOptimizerSteps,
  fileDataset,
  promptsForStep,
  shardPrompts,
  totalSteps,
  warmupBatch,
  type JobDataset,
} from './plan.js';
import { algorithmName, OPTIMIZER, warmupLearningRate } from './spec.js';
import type { JobStore } from './store.js';
import { restoreUploadedDataset } from './upload.js';

/** Where a job's driver resumes: stored as JSON in the job hash field `cursor` (the contract's schema). */
export type { DriverCursor };

export const INITIAL_CURSOR: DriverCursor = Object.freeze({ warmup: 0, evaluated: -1, step: 0, version: 0 });

/** The stored cursor; the initial one when absent or unreadable (the job then starts from the beginning). */
export function parseCursor(text: string | null): DriverCursor {
  if (!text) return { ...INITIAL_CURSOR };
  try {
    return parseDriverCursor(parseJson(text, 'driver cursor'));
  } catch {
    return { ...INITIAL_CURSOR };
  }
}

/** Most abandoned task ids kept (a rewind of many steps at most lists this many). */
const MAX_DISCARDED = 100_000;

/** The job hash's `discarded` field: `<role>:<task id>` strings; empty when absent or unreadable. */
export function parseDiscarded(text: string | null): string[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v)
      ? v.filter((x): x is string => typeof x === 'string').slice(0, MAX_DISCARDED)
      : [];
  } catch {
    return [];
  }
}

/** Whether an evaluation runs after `completed` RL steps (of `total`). */
export function evalDue(completed: number, total: number, evalInterval: number): boolean {
  return completed === total || (evalInterval > 0 && completed > 0 && completed % evalInterval === 0);
}

/** The job's stages for one RL step, by algorithm (documented in docs/jobs.md). */
export function stepPlan(algorithm: ReturnType<typeof algorithmName>): {
  synthesis: boolean;
  trainPolicy: boolean;
  rewardPhase: boolean;
} {
  return {
    synthesis: algorithm !== 'grpo',
    trainPolicy: algorithm !== 'grpo-judge',
    rewardPhase: algorithm !== 'grpo',
  };
}

const PROTO_PHASE: Record<PhaseName, Phase> = {
  warmup: Phase.PHASE_WARMUP,
  policy: Phase.PHASE_POLICY,
  reward: Phase.PHASE_REWARD,
  eval: Phase.PHASE_EVAL,
};

/** Why a driver stopped without finishing: a cancel (the job ends CANCELLED) or a coordinator shutdown. */
type StopReason = 'cancel' | 'shutdown';

class StopSignal extends Error {
  constructor(readonly reason: StopReason) {
    super(reason);
  }
}

/** The learner restarted behind the driver: the job rewinds to where it resumed. */
class RewindSignal extends Error {
  constructor(readonly to: LearnerResume) {
    super(`learner resumed at policy version ${to.version}`);
  }
}

/**
 * A task the driver enqueued is gone from its queue with no result: Redis lost the write (`appendfsync
 * everysec` may lose the last second or two of acknowledged writes when Redis is killed; the AOF replays a
 * consistent prefix). Nothing else would bring it back, so the driver resumes from its saved cursor, which
 * enqueues it again, as after an outage it noticed.
 */
class TaskLostError extends Error {
  constructor(role: QueueRole, taskId: string) {
    super(`${role} task ${taskId} is gone from its queue and left no result (Redis lost writes?)`);
  }
}

/** Rollout failures that mean the learner was down or restarting (not a bad task). */
const LEARNER_OUTAGE = /UNAVAILABLE|ECONNREFUSED|is not published yet|does not hold policy version/;
/** Rollout tasks put back after a learner outage, per driver run. */
const LEARNER_OUTAGE_RETRIES = 200;

/** Most rewinds one driver run makes before it fails the job (a learner that keeps losing its state). */
const MAX_REWINDS = 10;
/** How an ioredis / BullMQ call fails while Redis is down or restarting (not a fault of the job). */
const REDIS_UNREACHABLE =
  /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|max retries per request|LOADING/;
/** Redis outages one run of the driver rides out (each resumes from the saved cursor) before it fails the job. */
const MAX_REDIS_OUTAGES = 100;

// Before a step's synthesis (unless it already ran): a copy of the FIFO buffer and its epoch, what a
// rewind to that step restores. KEYS: synth, buffer, bufferEpoch, at, atEpoch.
const SNAPSHOT_BUFFER = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('COPY', KEYS[2], KEYS[4]) end
local e = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[5], e or '')
return 1
`;

// Restores the FIFO buffer from a step's copy; 0 when there is none. KEYS: buffer, bufferEpoch, at, atEpoch.
const RESTORE_BUFFER = `
local e = redis.call('GET', KEYS[4])
if not e then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('COPY', KEYS[3], KEYS[1]) end
if e == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], e) end
return 1
`;

export interface DriverDeps {
  readonly store: JobStore;
  /** Producer-style client for reading phase data. */
  readonly redis: Redis;
  readonly redisUrl: string;
  readonly config: CoordinatorConfig;
  readonly logger: Logger;
  readonly metrics: CoordinatorMetrics;
  /** Where uploaded datasets are also kept: a missing one is fetched back before the job reads it. */
  readonly datasetStore?: ObjectStore | null;
}

const ROLES: readonly QueueRole[] = ['rollout', 'verify', 'synthesis', 'learn'];

/**
 * Roles whose `completed` event may complete a wait: a verify shard (its groups are in the phase hash), a
 * synthesis, a learner update. A finished rollout shard only leads to a verify task, so it wakes nobody;
 * every role's `failed` event wakes the wait to look for a task that failed for good.
 */
const RESULT_ROLES: ReadonlySet<QueueRole> = new Set(['verify', 'synthesis', 'learn']);

/** How often a wait re-checks cancellation and failed tasks without an event, in ms. */
const SLOW_CHECK_MS = 2_000;

export class JobDriver {
  private stopReason: StopReason | null = null;
  private wake: (() => void) | null = null;
  /** A queue event arrived since the current wait last checked (the check runs again at once). */
  private nudged = false;
  /** A `failed` event arrived since the last look for failed tasks. */
  private failureNudged = false;
  private readonly queues = new Map<QueueRole, Queue>();
  private readonly events = new Map<QueueRole, QueueEvents>();
  private readonly prefix: string;
  private readonly log: Logger;
  /** The policy version the driver currently expects the learner to publish. */
  version = 0;
  private dataset: JobDataset | null = null;
  private evalItems: PromptItem[] | null = null;
  private orderCache: { epoch: number; order: number[] } | null = null;
  private horizon = 1;
  /** The last RL phase reported (see phaseEvent); null until read from the job hash. */
  private reported: number | null = null;
  /** `<role>:<task id>` of tasks a rewind abandoned: cleared again before the id is re-enqueued. */
  private readonly discarded = new Set<string>();
  /** The learner load (its `at`) the last rewind followed, so one load rewinds once. */
  private lastRewindAt = '';
  /** Rollout tasks put back after a learner outage in this run (see failedTask). */
  private outageRetries = 0;
  /** Resolves when the loop has ended (any way). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly jobId: string,
    private readonly spec: JobSpec,
    private readonly deps: DriverDeps,
  ) {
    this.prefix = deps.store.prefix;
    this.log = deps.logger.child({ job: jobId });
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /** Starts the loop (returns at once). */
  start(): void {
    void this.run().finally(() => this.resolveDone());
  }

  /** Asks the loop to stop at its next wait: 'cancel' ends the job CANCELLED, 'shutdown' leaves it RUNNING. */
  stop(reason: StopReason): void {
    if (this.stopReason !== 'cancel') this.stopReason = reason;
    this.wake?.();
  }

  /** A queue event: the current wait checks again now (and looks for failed tasks after a failure). */
  private nudge(failure: boolean): void {
    this.nudged = true;
    if (failure) this.failureNudged = true;
    this.wake?.();
  }

  /** Waiting + active tasks per role in this job's queues. */
  async queueDepths(): Promise<Record<QueueRole, number>> {
    const out: Record<QueueRole, number> = { rollout: 0, verify: 0, synthesis: 0, learn: 0 };
    for (const [role, q] of this.queues) {
      const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      out[role] = Object.values(c).reduce((a, b) => a + b, 0);
    }
    return out;
  }

  private queue(role: QueueRole): Queue {
    let q = this.queues.get(role);
    if (!q) {
      q = createQueue(queueName(role, this.jobId), { url: this.deps.redisUrl, prefix: this.prefix });
      q.on('error', (err) => this.log.warn({ err, role }, 'queue error'));
      this.queues.set(role, q);
    }
    return q;
  }

  /**
   * Follows the `completed`/`failed` events of the job's queues (one QueueEvents per role, each a blocking
   * connection reading the queue's event stream from now on). Events only wake waits; the result keys in
   * Redis stay the truth, so a missed or duplicate event costs at most one poll interval or one check.
   * Each reads on from its stream's current last entry, so no event after this call is missed however
   * long the blocking connection takes to come up.
   */
  private async listen(): Promise<void> {
    for (const role of ROLES) {
      if (this.events.has(role)) continue;
      const streamKey = this.queue(role).toKey('events');
      const last = await this.deps.redis.xrevrange(streamKey, '+', '-', 'COUNT', 1).then(
        (entries) => entries[0]?.[0] ?? '0',
        () => undefined, // Redis unreachable: read from whenever it answers (the poll covers the gap)
      );
      const ev = createQueueEvents(queueName(role, this.jobId), {
        url: this.deps.redisUrl,
        prefix: this.prefix,
        ...(last ? { lastEventId: last } : {}),
      });
      ev.on('error', (err) => this.log.warn({ err, role }, 'queue events error'));
      if (RESULT_ROLES.has(role)) ev.on('completed', () => this.nudge(false));
      ev.on('failed', () => this.nudge(true));
      this.events.set(role, ev);
    }
  }

  private async run(): Promise<void> {
    const { store, metrics } = this.deps;
    let outcome: { state: JobState; message: string } | null = null;
    try {
      await this.listen();
      // A Redis restart (AOF replayed) is survived like a coordinator restart: once Redis answers again
      // the job resumes from the cursor saved in its hash (every step of the driver is idempotent from it).
      for (let outages = 0; ; outages++) {
        try {
          await this.drive();
          break;
        } catch (err) {
          const lost = err instanceof TaskLostError;
          if (
            this.stopReason ||
            outages >= MAX_REDIS_OUTAGES ||
            (!lost && !REDIS_UNREACHABLE.test(describeError(err)))
          )
            throw err;
          this.log.warn(
            { err, outages },
            lost
              ? 'a task was lost; the job resumes from its saved cursor'
              : 'Redis unreachable; the job resumes from its saved cursor once it answers',
          );
          await this.awaitRedis();
          this.reported = null;
          this.discarded.clear();
        }
      }
      outcome = { state: JobState.JOB_STATE_SUCCEEDED, message: 'finished' };
    } catch (err) {
      const reason = err instanceof StopSignal ? err.reason : this.stopReason;
      if (reason === 'shutdown') {
        this.log.info('driver stopped for shutdown; the job resumes on the next start');
      } else if (reason === 'cancel' || err instanceof CancelledError) {
        outcome = { state: JobState.JOB_STATE_CANCELLED, message: 'cancelled' };
      } else {
        const why = describeError(err);
        metrics.error(err instanceof DeadlineExceededError ? 'timeout' : 'job_failed');
        this.log.error({ err }, 'job failed');
        outcome = { state: JobState.JOB_STATE_FAILED, message: why };
      }
    }
    try {
      if (outcome) {
        await store.transition(this.jobId, outcome.state, [JobState.JOB_STATE_RUNNING], {
          message: outcome.message,
          fields: { policyVersion: this.version },
        });
        await store.removeActive(this.jobId);
        await this.cleanup();
      }
    } catch (err) {
      metrics.error('store');
      this.log.error({ err }, 'cannot record the end of the job');
    } finally {
      await Promise.all(
        [...this.events.values(), ...this.queues.values()].map((q) => q.close().catch(() => undefined)),
      );
      this.events.clear();
      this.queues.clear();
    }
  }

  /** Waits (bounded by phaseTimeoutMs) until Redis answers a PING again; throws past the bound or on stop. */
  private async awaitRedis(): Promise<void> {
    const deadline = Date.now() + this.deps.config.phaseTimeoutMs;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      if (this.stopReason) throw new StopSignal(this.stopReason);
      // every connection the driver uses: its own and each queue's (they reconnect independently)
      const clients = [
        this.deps.redis,
        ...(await Promise.all([...this.queues.values()].map((q) => q.client))),
      ];
      const answers = await Promise.all(clients.map((c) => c.ping().catch(() => '')));
      if (answers.every((a) => a === 'PONG')) return;
      if (Date.now() > deadline)
        throw new DeadlineExceededError(
          `Redis did not answer again within ${this.deps.config.phaseTimeoutMs} ms; the job cannot go on`,
        );
    }
  }

  /** Ended job: its queues are emptied and removed; large phase data is deleted. */
  private async cleanup(): Promise<void> {
    for (const role of ROLES) {
      try {
        await this.queue(role).obliterate({ force: true });
      } catch (err) {
        this.log.warn({ err, role }, 'cannot obliterate queue');
      }
    }
    await this.deps.redis.del(
      jobKeys.buffer(this.prefix, this.jobId),
      jobKeys.bufferEpoch(this.prefix, this.jobId),
      jobKeys.resumed(this.prefix, this.jobId),
    );
    let scan = '0';
    let rounds = 0;
    do {
      const [next, keys] = await this.deps.redis.scan(
        scan,
        'MATCH',
        `${jobKeys.bufferAt(this.prefix, this.jobId, 0).slice(0, -1)}*`,
        'COUNT',
        1000,
      );
      if (keys.length) await this.deps.redis.del(...keys);
      scan = next;
    } while (scan !== '0' && ++rounds < 10_000);
  }

  // ---- the job -------------------------------------------------------------------------------

  private async drive(): Promise<void> {
    const { store } = this.deps;
    const spec = this.spec;
    let cursor = parseCursor(await store.getField(this.jobId, 'cursor'));
    // task ids a rewind abandoned and that were not enqueued again yet (kept across a coordinator restart)
    for (const d of parseDiscarded(await store.getField(this.jobId, 'discarded'))) this.discarded.add(d);
    this.version = cursor.version;
    if (spec.dataset !== 'builtin')
      await restoreUploadedDataset(
        this.deps.datasetStore ?? null,
        this.deps.config.datasetDir,
        spec.dataset,
        this.deps.config.uploadMaxBytes,
      );
    this.dataset = spec.dataset === 'builtin' ? builtinDataset(spec) : await fileDataset(spec);
    const T = totalSteps(spec, this.dataset.train.length);
    this.horizon = estimateOptimizerSteps(spec, T);
    this.log.info({ steps: T, resumeAt: cursor, train: this.dataset.train.length }, 'driving job');
    for (let rewinds = 0; ; rewinds++) {
      try {
        await this.driveFrom(cursor, T);
        return;
      } catch (err) {
        if (!(err instanceof RewindSignal)) throw err;
        if (rewinds >= MAX_REWINDS)
          throw new FailedPreconditionError(
            `the learner restarted behind the job ${MAX_REWINDS} times in one run; giving up`,
          );
        cursor = await this.rewind(cursor, err.to, T);
      }
    }
  }

  /** Runs the job from `cursor` (advanced in place as units of work complete) to its end. */
  private async driveFrom(cursor: DriverCursor, T: number): Promise<void> {
    const spec = this.spec;
    for (let w = cursor.warmup; w < spec.warmupSteps; w++) {
      await this.warmupStep(w);
      cursor.warmup = w + 1;
      cursor.version = this.version;
      await this.saveCursor(cursor);
    }
    if (cursor.evaluated < 0) {
      await this.evaluate(cursor.step);
      cursor.evaluated = cursor.step;
      await this.saveCursor(cursor);
    }
    // a restart between an RL step and its evaluation: run that evaluation first
    if (cursor.evaluated !== cursor.step && cursor.step > 0 && evalDue(cursor.step, T, spec.evalInterval)) {
      await this.evaluate(cursor.step);
      cursor.evaluated = cursor.step;
      await this.saveCursor(cursor);
    }
    const plan = stepPlan(algorithmName(spec.algorithm));
    for (let t = cursor.step; t < T; t++) {
      await this.rlStep(t, t === T - 1, plan);
      cursor.step = t + 1;
      cursor.version = this.version;
      await this.saveCursor(cursor, { step: t + 1 });
      this.deps.metrics.stepDone();
      await this.deps.redis.del(
        jobKeys.groups(this.prefix, this.jobId, t, 'policy'),
        jobKeys.groups(this.prefix, this.jobId, t, 'reward'),
      );
      // buffer copies older than a rewind can reach (two checkpoint intervals back) are dropped
      const keep = spec.checkpointInterval > 0 ? 2 * spec.checkpointInterval + 2 : 1;
      if (t - keep >= 0)
        await this.deps.redis.del(
          jobKeys.bufferAt(this.prefix, this.jobId, t - keep),
          jobKeys.bufferEpochAt(this.prefix, this.jobId, t - keep),
        );
      if (cursor.evaluated !== t + 1 && evalDue(t + 1, T, spec.evalInterval)) {
        await this.evaluate(t + 1);
        cursor.evaluated = t + 1;
        await this.saveCursor(cursor);
      }
    }
  }

  /**
   * The learner resumed the job at `to`, behind `cur`: discards the work of the abandoned warm-up and RL
   * steps, restores the FIFO buffer, records the rewind and returns the cursor to go on from.
   */
  private async rewind(cur: DriverCursor, to: LearnerResume, T: number): Promise<DriverCursor> {
    const spec = this.spec;
    const redis = this.deps.redis;
    const W = spec.warmupSteps;
    const next: DriverCursor =
      to.phase === 'start'
        ? { warmup: 0, evaluated: -1, step: 0, version: 0 }
        : to.phase === 'warmup'
          ? { warmup: W, evaluated: cur.evaluated >= 0 ? 0 : -1, step: 0, version: to.version }
          : {
              warmup: W,
              evaluated: Math.min(cur.evaluated, to.step + 1),
              step: Math.min(to.step + 1, T),
              version: to.version,
            };
    if (next.step > cur.step || (next.step === cur.step && next.warmup > cur.warmup))
      throw new FailedPreconditionError(
        `the learner resumed at step ${to.step} (${to.phase}), ahead of the job at step ${cur.step}`,
      );
    // every task id and result key of the abandoned units of work
    const tasks: [QueueRole, string][] = [];
    const keys: string[] = [];
    const learned: [string, string][] = [];
    const p = this.prefix;
    const id = this.jobId;
    if (next.warmup < W)
      for (let w = next.warmup; w <= Math.min(cur.warmup, W - 1); w++) {
        tasks.push(['learn', `${w}/warmup`]);
        learned.push([`${w}/warmup`, jobKeys.learned(p, id, w, 'warmup')]);
      }
    this.evalItems ??= buildEvalItems(
      (this.dataset as JobDataset).test,
      spec.templateVariant as TemplateVariant,
      spec.seed,
    );
    const shards = Math.ceil(Math.max(spec.batchSize, this.evalItems.length, 1) / this.deps.config.shardSize);
    for (let t = next.step; t <= Math.min(cur.step, T); t++) {
      const phases: PhaseName[] = ['policy', 'reward'];
      if (t > next.evaluated) phases.push('eval');
      for (const phase of phases) {
        keys.push(jobKeys.groups(p, id, t, phase));
        for (let i = 0; i < shards; i++)
          tasks.push(['rollout', `${t}/${phase}/${i}`], ['verify', `${t}/${phase}/${i}`]);
      }
      tasks.push(['synthesis', synthesisTaskId(t)]);
      keys.push(jobKeys.synth(p, id, t));
      for (const phase of ['policy', 'reward', 'checkpoint'] as const) {
        tasks.push(['learn', `${t}/${phase}`]);
        learned.push([`${t}/${phase}`, jobKeys.learned(p, id, t, phase)]);
      }
      if (t > next.step) keys.push(jobKeys.bufferAt(p, id, t), jobKeys.bufferEpochAt(p, id, t));
    }
    const abandoned: string[] = [];
    for (const [unit, key] of learned) {
      const text = await redis.get(key);
      if (text) abandoned.push(`${unit} (v${parseLearnResult(parseJson(text, key)).policyVersion})`);
      keys.push(key);
    }
    for (const [role, taskId] of tasks) this.discarded.add(`${role}:${taskId}`);
    await this.saveDiscarded();
    for (const [role, taskId] of tasks)
      await this.queue(role)
        .remove(taskId)
        .catch(() => 0);
    // an old synthesis still running would change the buffer after it is restored: wait it out
    await this.clearDiscarded(
      'synthesis',
      tasks.filter(([r]) => r === 'synthesis').map(([, t]) => t),
      [],
    );
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
    if (next.step === 0) {
      await redis.del(jobKeys.buffer(p, id), jobKeys.bufferEpoch(p, id));
    } else if (stepPlan(algorithmName(spec.algorithm)).synthesis) {
      const ok = await redis.eval(
        RESTORE_BUFFER,
        4,
        jobKeys.buffer(p, id),
        jobKeys.bufferEpoch(p, id),
        jobKeys.bufferAt(p, id, next.step),
        jobKeys.bufferEpochAt(p, id, next.step),
      );
      if (ok !== 1)
        throw new FailedPreconditionError(
          `cannot rewind to step ${next.step}: the copy of the recycling buffer before it was dropped`,
        );
    }
    this.version = next.version;
    this.lastRewindAt = to.at;
    this.reported = next.step > 0 ? 2 * next.step - 1 : -1;
    const message =
      `learner resumed at policy version ${to.version} (${to.phase === 'start' ? 'no checkpoint' : `${to.phase} checkpoint of step ${to.step}`}): ` +
      `rewound from ${cur.warmup < W ? `warm-up step ${cur.warmup}` : `step ${cur.step}`} to ` +
      `${next.warmup < W ? `warm-up step ${next.warmup}` : `step ${next.step}`}; abandoned updates: ${abandoned.join(', ') || 'none'}`;
    this.log.warn({ from: cur, to: next, resumed: to, abandoned }, 'rewinding the job');
    await this.deps.store.event(
      this.jobId,
      {
        type: JobEventType.JOB_EVENT_TYPE_STATE,
        state: JobState.JOB_STATE_RUNNING,
        step: next.step,
        metrics: {
          rewound_to_step: next.step,
          rewound_to_warmup: next.warmup,
          abandoned_updates: abandoned.length,
          policy_version: next.version,
        },
        message,
      },
      { cursor: JSON.stringify(next), policyVersion: next.version, reported: this.reported, step: next.step },
    );
    return next;
  }

  /**
   * The learner restarted behind this driver (it publishes a version below the expected one and recorded
   * where it resumed): a RewindSignal to that point.
   */
  private async checkRewind(): Promise<void> {
    const p = this.prefix;
    const published = await this.deps.redis.hget(jobKeys.policy(p, this.jobId), 'version');
    if (published === null || !(Number(published) < this.version)) return;
    const text = await this.deps.redis.get(jobKeys.resumed(p, this.jobId));
    if (!text) return;
    const to = parseLearnerResume(parseJson(text, 'learner resume record'));
    if (to.version !== Number(published) || to.at === this.lastRewindAt) return;
    throw new RewindSignal(to);
  }

  /**
   * Before ids a rewind abandoned are enqueued again: waits until no worker holds them (bounded by the phase
   * time-out), removes them and deletes the result keys the old tasks may still have written.
   */
  private async clearDiscarded(role: QueueRole, ids: readonly string[], resultKeys: string[]): Promise<void> {
    const mine = ids.filter((i) => this.discarded.has(`${role}:${i}`));
    if (!mine.length) return;
    const q = this.queue(role);
    const deadline = Date.now() + this.deps.config.phaseTimeoutMs;
    for (const taskId of mine) {
      for (;;) {
        if (this.stopReason) throw new StopSignal(this.stopReason);
        const state = await q.getJobState(taskId);
        if (state === 'unknown') break;
        if (state !== 'active' && (await q.remove(taskId).catch(() => 0)) === 1) break;
        if (Date.now() > deadline)
          throw new DeadlineExceededError(`abandoned ${role} task ${taskId} is still held by a worker`);
        await new Promise((r) => setTimeout(r, Math.min(this.deps.config.pollMs, 500)));
      }
      this.discarded.delete(`${role}:${taskId}`);
    }
    if (resultKeys.length) await this.deps.redis.del(...resultKeys);
    await this.saveDiscarded();
  }

  private async saveDiscarded(): Promise<void> {
    await this.deps.store.setFields(this.jobId, { discarded: JSON.stringify([...this.discarded]) });
  }

  private async saveCursor(c: DriverCursor, extra: Record<string, number> = {}): Promise<void> {
    await this.deps.store.setFields(this.jobId, {
      cursor: JSON.stringify(c),
      policyVersion: this.version,
      ...extra,
    });
  }

  private hyper(warmup: boolean, step: number): LearnHyper {
    const s = this.spec;
    return {
      learningRate: warmup ? warmupLearningRate(s, step) : s.learningRate,
      clipEpsilon: s.clipEpsilon,
      klCoefficient: s.klCoefficient,
      miniBatchSize: warmup ? s.warmupBatchSize : s.miniBatchSize,
      microBatchSize: warmup ? Math.min(s.microBatchSize, s.warmupBatchSize) : s.microBatchSize,
      ...OPTIMIZER,
    };
  }

  private async warmupStep(w: number): Promise<void> {
    const t0 = performance.now();
    const sft = warmupBatch((this.dataset as JobDataset).train, this.spec, w);
    if (sft.length === 0)
      throw new FailedPreconditionError('warm-up needs worked solutions; the dataset has none');
    // the last warm-up step also writes the `warmup` checkpoint (the base model, before any RL)
    const last = w === this.spec.warmupSteps - 1;
    const result = await this.learn({
      step: w,
      phase: 'warmup',
      groupIds: [],
      sft,
      ...(last ? { final: true } : {}),
    });
    const seconds = (performance.now() - t0) / 1000;
    this.deps.metrics.phase('warmup', seconds);
    await this.phaseEvent(w, 'warmup', {
      ...learnMetrics(result),
      warmup_step: w + 1,
      'seconds.learner': seconds,
      'seconds.total': seconds,
    });
  }

  /** One RL step; `last` marks the job's final update. */
  private async rlStep(t: number, last: boolean, plan: ReturnType<typeof stepPlan>): Promise<void> {
    const s = this.spec;
    const tStep = performance.now();
    const train = (this.dataset as JobDataset).train;
    const epoch = epochOf(t, train.length, s.batchSize);
    if (this.orderCache?.epoch !== epoch)
      this.orderCache = { epoch, order: epochOrder(train.length, s.seed, epoch) };
    const prompts = promptsForStep(train, s, t, this.orderCache.order);

    // policy phase: sample and verify with the current version
    const sampledWith = this.version;
    const tSample = performance.now();
    const groups = await this.sampleAndVerify(t, 'policy', prompts, s.groupSize, s.temperature, s.topP);
    const samplingSeconds = (performance.now() - tSample) / 1000;

    let synth: SynthesisResult | null = null;
    let synthesisSeconds = 0;
    if (plan.synthesis) {
      const t1 = performance.now();
      synth = await this.synthesize(t, epoch, groups);
      synthesisSeconds = (performance.now() - t1) / 1000;
    }
    const released = plan.rewardPhase && synth?.released && synth.released.length > 0 ? synth.released : null;

    let policyLearn: LearnResult | null = null;
    let learnerSeconds = 0;
    if (plan.trainPolicy) {
      const t2 = performance.now();
      policyLearn = await this.learn({
        step: t,
        phase: 'policy',
        groupIds: groups.map((g) => g.groupId),
        sft: [],
        sampledWith,
        final: last && !released,
        midStep: Boolean(released),
      });
      learnerSeconds = (performance.now() - t2) / 1000;
    }
    const policySeconds = (performance.now() - tStep) / 1000;
    this.deps.metrics.phase('policy', policySeconds);
    const pm = aggregatePhase(groups);
    this.rewardMetrics('policy', pm);
    await this.phaseEvent(t, 'policy', {
      ...pm,
      ...(policyLearn ? learnMetrics(policyLearn) : {}),
      trained: policyLearn ? 1 : 0,
      ...(synth
        ? {
            judge_items: synth.judgeItems,
            reflection_items: synth.reflectionItems,
            buffer_length: synth.bufferLength,
            released: released ? released.length : 0,
          }
        : {}),
      epoch,
      'seconds.sampling': samplingSeconds,
      'seconds.synthesis': synthesisSeconds,
      'seconds.learner': learnerSeconds,
      'seconds.total': policySeconds,
    });

    if (released) {
      const tReward = performance.now();
      const rewardWith = this.version;
      const rGroups = await this.sampleAndVerify(t, 'reward', released, s.groupSize, s.temperature, s.topP);
      const rSampling = (performance.now() - tReward) / 1000;
      const t3 = performance.now();
      const rewardLearn = await this.learn({
        step: t,
        phase: 'reward',
        groupIds: rGroups.map((g) => g.groupId),
        sft: [],
        sampledWith: rewardWith,
        final: last,
      });
      const rLearner = (performance.now() - t3) / 1000;
      const rewardSeconds = (performance.now() - tReward) / 1000;
      this.deps.metrics.phase('reward', rewardSeconds);
      const rm = aggregatePhase(rGroups);
      this.rewardMetrics('reward', rm);
      await this.phaseEvent(t, 'reward', {
        ...rm,
        ...learnMetrics(rewardLearn),
        trained: 1,
        epoch,
        'seconds.sampling': rSampling,
        'seconds.learner': rLearner,
        'seconds.total': rewardSeconds,
        'seconds.step': (performance.now() - tStep) / 1000,
      });
    }
    // the last step trained nothing (grpo-judge without a reward phase): still end with a checkpoint
    if (last && !released && !plan.trainPolicy)
      await this.learn({ step: t, phase: 'checkpoint', groupIds: [], sft: [], final: true });
  }

  private rewardMetrics(phase: string, m: Record<string, number>): void {
    for (const kind of ['problem', 'pointwise', 'pairwise', 'reflection']) {
      const v = m[`reward_mean.${kind}`];
      if (v !== undefined) this.deps.metrics.rewardOf(phase, kind, v);
    }
  }

  private async evaluate(step: number): Promise<void> {
    const s = this.spec;
    const t0 = performance.now();
    this.evalItems ??= buildEvalItems(
      (this.dataset as JobDataset).test,
      s.templateVariant as TemplateVariant,
      s.seed,
    );
    const groups = await this.sampleAndVerify(step, 'eval', this.evalItems, 1, 0, 1);
    const m = aggregateEval(groups);
    const seconds = (performance.now() - t0) / 1000;
    this.deps.metrics.phase('eval', seconds);
    const { metrics } = this.deps;
    metrics.evalOf('problem', m.answer_accuracy ?? 0);
    metrics.evalOf('reflection', m.reflection_accuracy ?? 0);
    metrics.evalOf('judge', m.judge_accuracy ?? 0);
    metrics.judgeOf('pointwise-yesno', m.pointwise_yesno_accuracy ?? 0);
    metrics.judgeOf('pointwise-ab', m.pointwise_ab_accuracy ?? 0);
    metrics.judgeOf('pairwise', m.pairwise_accuracy ?? 0);
    await this.deps.store.event(this.jobId, {
      type: JobEventType.JOB_EVENT_TYPE_EVAL,
      state: JobState.JOB_STATE_RUNNING,
      step,
      phase: Phase.PHASE_EVAL,
      metrics: { ...m, policy_version: this.version, 'seconds.total': seconds },
      message: step === 0 ? 'before RL' : `after ${step} steps`,
    });
    await this.deps.redis.del(jobKeys.groups(this.prefix, this.jobId, step, 'eval'));
  }

  /**
   * Emits a PHASE event once: RL phases are numbered (2·step, +1 for the reward phase) and the job hash's
   * `reported` field keeps the last one emitted (written with the event), so a step re-run after a restart
   * does not report its phases twice.
   */
  private async phaseEvent(step: number, phase: PhaseName, metrics: Record<string, number>): Promise<void> {
    const ord = phase === 'warmup' ? null : 2 * step + (phase === 'reward' ? 1 : 0);
    if (ord !== null) {
      this.reported ??= Number((await this.deps.store.getField(this.jobId, 'reported')) ?? -1);
      if (ord <= this.reported) return;
      this.reported = ord;
    }
    await this.deps.store.event(
      this.jobId,
      {
        type: JobEventType.JOB_EVENT_TYPE_PHASE,
        state: JobState.JOB_STATE_RUNNING,
        step,
        phase: PROTO_PHASE[phase],
        metrics: { ...metrics, policy_version: this.version },
      },
      ord === null ? { policyVersion: this.version } : { policyVersion: this.version, reported: ord },
    );
  }

  // ---- work and waits ------------------------------------------------------------------------

  /** Enqueues the phase's rollout shards and waits until every group is verified; returns the groups. */
  private async sampleAndVerify(
    step: number,
    phase: PhaseName,
    prompts: readonly PromptItem[],
    groupSize: number,
    temperature: number,
    topP: number,
  ): Promise<VerifiedGroup[]> {
    const s = this.spec;
    const queue = this.queue('rollout');
    const shards = shardPrompts(prompts, this.deps.config.shardSize);
    const key = jobKeys.groups(this.prefix, this.jobId, step, phase);
    const ids = shards.map((_, i) => `${step}/${phase}/${i}`);
    await this.clearDiscarded('rollout', ids, []);
    await this.clearDiscarded('verify', ids, [key]);
    const shardIds: string[] = [];
    for (const [i, shard] of shards.entries()) {
      const shardId = `${step}/${phase}/${i}`;
      shardIds.push(shardId);
      const task: RolloutTask = {
        jobId: this.jobId,
        step,
        phase,
        shardId,
        policyVersion: this.version,
        groupSize,
        sampling: { temperature, topP, maxNewTokens: s.maxNewTokens, seed: s.seed },
        prompts: shard,
      };
      await enqueueBounded(queue, 'rollout', task, {
        jobId: shardId,
        maxDepth: this.deps.config.queueMaxDepth,
      });
    }
    const want = new Set(prompts.map((p) => groupIdOf(step, phase, p.promptId)));
    await this.waitFor(
      `${phase} phase of step ${step}: ${want.size} verified groups`,
      async () => ((await this.deps.redis.hlen(key)) >= want.size ? true : null),
      async () => (await this.failedTask('rollout', shardIds)) ?? (await this.failedTask('verify', shardIds)),
    );
    const raw = await this.deps.redis.hgetall(key);
    const groups: VerifiedGroup[] = [];
    for (const id of want) {
      const text = raw[id];
      if (text === undefined)
        throw new FailedPreconditionError(`verified group ${id} is missing from ${key}`);
      const group = parseVerifiedGroup(parseJson(text, `verified group ${id}`));
      if (group.groupId !== id)
        throw new InvalidArgumentError(`verified group ${id} holds group ${group.groupId}`);
      groups.push(group);
    }
    return groups;
  }

  private async synthesize(
    step: number,
    epoch: number,
    groups: readonly VerifiedGroup[],
  ): Promise<SynthesisResult> {
    const s = this.spec;
    const judge = Boolean(s.recyclePointwise || s.recyclePairwise);
    const reflection = algorithmName(s.algorithm) === 'spark' && Boolean(s.recycleReflection);
    const task: SynthesisTask = {
      jobId: this.jobId,
      step,
      epoch,
      batchSize: s.batchSize,
      seed: s.seed,
      judge,
      reflection,
      groupIds: groups.map((g) => g.groupId),
      pointwise: Boolean(s.recyclePointwise),
      pairwise: Boolean(s.recyclePairwise),
      ...(s.recycleBalanceLabels ? { balanceLabels: true } : {}),
      templateVariant: s.templateVariant === 'full' ? 'full' : 'short',
    };
    const id = synthesisTaskId(step);
    const key = jobKeys.synth(this.prefix, this.jobId, step);
    await this.clearDiscarded('synthesis', [id], [key]);
    // the buffer as it is before this step (unless the step's synthesis already ran): a rewind restores it
    await this.deps.redis.eval(
      SNAPSHOT_BUFFER,
      5,
      key,
      jobKeys.buffer(this.prefix, this.jobId),
      jobKeys.bufferEpoch(this.prefix, this.jobId),
      jobKeys.bufferAt(this.prefix, this.jobId, step),
      jobKeys.bufferEpochAt(this.prefix, this.jobId, step),
    );
    await enqueueBounded(this.queue('synthesis'), 'synthesis', task, {
      jobId: id,
      maxDepth: this.deps.config.queueMaxDepth,
    });
    return this.waitFor(
      `synthesis of step ${step}`,
      async () => {
        const text = await this.deps.redis.get(key);
        return text ? parseSynthesisResult(parseJson(text, key)) : null;
      },
      () => this.failedTask('synthesis', [id]),
    );
  }

  private async learn(req: {
    step: number;
    phase: LearnTask['phase'];
    groupIds: string[];
    sft: { prompt: string; target: string }[];
    sampledWith?: number;
    final?: boolean;
    midStep?: boolean;
  }): Promise<LearnResult> {
    const task: LearnTask = {
      jobId: this.jobId,
      step: req.step,
      phase: req.phase,
      policyVersion: req.sampledWith ?? this.version,
      groupIds: req.groupIds,
      hyper: this.hyper(req.phase === 'warmup', req.step),
      sft: req.sft,
      totalOptimizerSteps: this.horizon,
      ...(req.final ? { final: true } : {}),
      ...(req.midStep ? { midStep: true } : {}),
    };
    const id = `${req.step}/${req.phase}`;
    const key = jobKeys.learned(this.prefix, this.jobId, req.step, req.phase);
    await this.clearDiscarded('learn', [id], [key]);
    await enqueueBounded(this.queue('learn'), 'learn', task, {
      jobId: id,
      maxDepth: this.deps.config.queueMaxDepth,
    });
    const result = await this.waitFor(
      `learner update ${id}`,
      async () => {
        const text = await this.deps.redis.get(key);
        return text ? parseLearnResult(parseJson(text, key)) : null;
      },
      () => this.failedTask('learn', [id]),
    );
    this.version = result.policyVersion;
    if (result.checkpointPath) {
      await this.deps.store.event(this.jobId, {
        type: JobEventType.JOB_EVENT_TYPE_CHECKPOINT,
        state: JobState.JOB_STATE_RUNNING,
        step: req.step,
        // a checkpoint-only task belongs to no phase (like the job's QUEUED and FINISHED events)
        ...(req.phase === 'checkpoint' ? {} : { phase: PROTO_PHASE[req.phase] }),
        metrics: { policy_version: result.policyVersion, final: req.final ? 1 : 0 },
        message: result.checkpointPath,
      });
    }
    return result;
  }

  /**
   * The failure reason of the first of `ids` that failed for good in a role's queue, or null. A rollout
   * task that failed because the learner was unreachable or did not (yet) serve its policy version is put
   * back instead (at most LEARNER_OUTAGE_RETRIES times per run; the phase time-out bounds the wait): a
   * restarting learner comes back, and when it comes back behind the job, the job rewinds.
   */
  private async failedTask(role: QueueRole, ids: readonly string[]): Promise<string | TaskLostError | null> {
    const q = this.queue(role);
    for (const id of ids) {
      const state = await q.getJobState(id);
      // the driver enqueued it (verify tasks come from rollout workers: unknown until its shard ran), and a
      // completed task stays listed (removeOnComplete keeps an hour): unknown means it was lost
      if (state === 'unknown' && role !== 'verify') return new TaskLostError(role, id);
      if (state === 'failed') {
        const job = await q.getJob(id);
        if (
          role === 'rollout' &&
          job &&
          LEARNER_OUTAGE.test(job.failedReason ?? '') &&
          this.outageRetries < LEARNER_OUTAGE_RETRIES
        ) {
          this.outageRetries += 1;
          this.log.warn(
            { task: id, reason: job.failedReason },
            'rollout task failed on a learner outage: retried',
          );
          await job
            .retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
            .catch(() => undefined);
          continue;
        }
        return `${role} task ${id} failed after ${job?.attemptsMade ?? '?'} attempts: ${job?.failedReason ?? 'unknown reason'}`;
      }
    }
    return null;
  }

  /**
   * Waits until `check` returns a value. `check` runs at once, again after every queue event of the job
   * (see listen) and at least every pollMs (the safety net); bounded by the phase time-out; stops on a
   * cancel or shutdown. After a `failed` event, and every ~2 s, it asks `failed` whether a task failed for
   * good (then the job fails with it) and reads the cancel flag.
   */
  private async waitFor<T>(
    what: string,
    check: () => Promise<T | null>,
    failed: () => Promise<string | TaskLostError | null>,
  ): Promise<T> {
    const { pollMs, phaseTimeoutMs } = this.deps.config;
    const started = Date.now();
    const deadline = started + phaseTimeoutMs;
    let lastSlowCheck = started;
    for (;;) {
      if (this.stopReason) throw new StopSignal(this.stopReason);
      // cleared before the check: an event that arrives while it runs makes the next sleep return at once
      this.nudged = false;
      const v = await check();
      if (v !== null) return v;
      if (this.failureNudged || Date.now() - lastSlowCheck > SLOW_CHECK_MS) {
        this.failureNudged = false;
        lastSlowCheck = Date.now();
        if (await this.deps.store.cancelRequested(this.jobId)) throw new StopSignal('cancel');
        // a learner that restarted behind the job makes its tasks fail: rewind rather than fail the job
        await this.checkRewind();
        const why = await failed();
        if (typeof why === 'string') throw new FailedPreconditionError(why);
        // a task that completed over an hour ago may have been pruned from its queue: unknown proves
        // nothing then (a phase rarely waits that long; its time-out still bounds the wait)
        if (why && Date.now() - started < COMPLETED_KEPT_S * 1000) {
          // its result may have come (and the task been removed) since the check above
          const late = await check();
          if (late !== null) return late;
          throw why;
        }
      }
      const left = deadline - Date.now();
      if (left < 0) {
        throw new DeadlineExceededError(
          `timed out after ${Math.round(phaseTimeoutMs / 1000)} s waiting for ${what}`,
        );
      }
      await this.sleep(Math.min(pollMs, left + 1));
    }
  }

  /** Sleeps `ms`, or less: returns at once on a queue event (also one that came before) or a stop. */
  private sleep(ms: number): Promise<void> {
    if (this.nudged || this.stopReason) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}

/** The learner's figures of an update, as event metrics. */
export function learnMetrics(r: LearnResult): Record<string, number> {
  return {
    loss: r.loss,
    kl: r.kl,
    clip_fraction: r.clipFraction,
    grad_norm: r.gradNorm,
    optimizer_steps: r.optimizerSteps,
    sequences: r.sequences,
    tokens: r.tokens,
    stale_groups: r.staleGroups,
    ...(r.learningRate !== undefined ? { lr: r.learningRate } : {}),
    ...(r.skippedSequences !== undefined ? { skipped_sequences: r.skippedSequences } : {}),
    'seconds.logprobs': r.seconds.logprobs,
    'seconds.train': r.seconds.train,
    'seconds.publish': r.seconds.publish,
  };
}
