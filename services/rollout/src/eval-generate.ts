// The rollout workers' side of JobService.Generate (evaluation through the cluster): GenerateTasks from
// the cluster-wide `eval-generate` queue are answered with the greedy generator of checkpoint.ts, on a
// model loaded from the task's checkpoint path (a directory every worker can read, as the learner's
// checkpoints are on a shared volume), or fetched from the object store when the task names `job:<jobId>`
// or `job:<jobId>/<dir>` (checkpoint-store.ts of @spark/contract; local copies under the eval cache dir,
// the most recent few kept). Loaded checkpoints are cached by resolved model directory,
// tokenizer and the files' modification times (a rewritten checkpoint is reloaded), at most `maxEntries`
// of them (least recently used freed), and freed after `idleMs` without use. A missing or unusable
// checkpoint and a bad request are answered with an `error` result (not retried); anything else throws
// so that BullMQ retries the task (on any worker).
import { realpathSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, join, sep } from 'node:path';

import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '@spark/runtime';
import {
  CHECKPOINT_FILES,
  EVAL_GENERATE_QUEUE,
  fetchCheckpoint,
  GENERATE_LIMITS,
  parseStoredCheckpointRef,
  parseGenerateTask as parseContractGenerateTask,
  type GenerateTask,
  type GenerateTaskResult,
  type WorkerHost,
} from '@spark/contract';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import type { ObjectStore } from '@spark/runtime/storage';
import { createWorker, type Job } from '@spark/runtime/redis';
import type { Worker } from 'bullmq';

import {
  CheckpointLoadError,
  loadGenerator,
  resolveCheckpoint,
  type LoadedGenerator,
} from '@spark/method/checkpoint';

/**
 * Parses a GenerateTask (the contract's schema) and checks what the schema cannot (the checkpoint path is
 * absolute); a message listing the bad fields when invalid.
 */
export function parseGenerateTask(data: unknown): GenerateTask | string {
  let task: GenerateTask;
  try {
    task = parseContractGenerateTask(data);
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err.message;
    throw err;
  }
  if (task.checkpoint.startsWith('job:')) {
    try {
      parseStoredCheckpointRef(task.checkpoint);
    } catch (err) {
      if (err instanceof InvalidArgumentError) return err.message;
      throw err;
    }
  } else if (!isAbsolute(task.checkpoint))
    return `checkpoint must be an absolute path or job:<jobId>[/<dir>], got ${task.checkpoint}`;
  return task;
}

interface Entry {
  readonly key: string;
  readonly gen: LoadedGenerator;
  lastUsed: number;
}

const mtimeOf = (path: string): Promise<number> =>
  stat(path).then(
    (s) => s.mtimeMs,
    () => -1,
  );

/** What the worker tells metrics after each task. */
export interface GenerateTaskReport {
  readonly prompts: number;
  readonly outputTokens: number;
  readonly seconds: number;
  readonly loaded: boolean;
}

/** Loaded evaluation checkpoints of one rollout worker (bounded, idle ones freed). */
export class CheckpointGenerators {
  private readonly entries = new Map<string, Entry>();
  readonly worker = `${hostname()}:${process.pid}`;

  constructor(
    private readonly options: {
      readonly maxEntries: number;
      readonly idleMs: number;
      /** Where `job:` checkpoints are read from (null: none configured, such names are refused). */
      readonly store?: ObjectStore | null;
      /** Local copies of fetched `job:` checkpoints (`<cacheDir>/<jobId>/<dir>/`). */
      readonly cacheDir?: string;
      /** Largest checkpoint file fetched, in bytes. */
      readonly maxFileBytes?: number;
      /** Directories checkpoint and tokenizer paths must lie below (empty or absent: any). */
      readonly pathRoots?: readonly string[];
    },
  ) {}

  /** Null when `path` lies below a path root (or none are set), else the refusal (same for every reason). */
  private outsideRoots(field: string, path: string): GenerateTaskResult | null {
    const roots = this.options.pathRoots ?? [];
    if (roots.length === 0) return null;
    let real: string | null = null;
    try {
      real = realpathSync(path);
    } catch {
      real = null;
    }
    const inside =
      real !== null &&
      roots.some((root) => {
        let r: string;
        try {
          r = realpathSync(root);
        } catch {
          return false;
        }
        return real === r || real.startsWith(r.endsWith(sep) ? r : r + sep);
      });
    if (inside) return null;
    return {
      error: {
        code: 'invalid-argument',
        message: `${field} "${path.slice(0, 200)}" is not a readable path below the rollout workers' allowed roots (${roots.join(', ')}); name a stored checkpoint as job:<jobId>`,
      },
    };
  }

  /** The local directory of the task's checkpoint: a path as it is, a `job:` name fetched from the store. */
  private async localCheckpoint(checkpoint: string): Promise<string | GenerateTaskResult> {
    const ref = parseStoredCheckpointRef(checkpoint);
    if (!ref) return this.outsideRoots('checkpoint', checkpoint) ?? checkpoint;
    const { store, cacheDir } = this.options;
    if (!store || !cacheDir)
      return {
        error: {
          code: 'invalid-argument',
          message: `checkpoint ${checkpoint}: the rollout workers have no object store (SPARK_STORE_BUCKET); name a checkpoint directory they can read`,
        },
      };
    try {
      const dir = await fetchCheckpoint(store, ref, cacheDir, this.options.maxFileBytes ?? 64 * 1024 ** 3);
      await pruneFetched(cacheDir, this.options.maxEntries + 1, dir);
      return dir;
    } catch (err) {
      if (err instanceof NotFoundError) return { error: { code: 'not-found', message: err.message } };
      if (err instanceof InvalidArgumentError || err instanceof ResourceExhaustedError)
        return { error: { code: 'invalid-argument', message: err.message } };
      throw err;
    }
  }

  /** Checkpoint keys currently loaded (for tests and logs). */
  get loaded(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * Answers one task. Callers run one task at a time per instance (the worker's concurrency is 1), so a
   * model is never freed while it samples.
   */
  async run(data: unknown, report?: (r: GenerateTaskReport) => void): Promise<GenerateTaskResult> {
    const task = parseGenerateTask(data);
    if (typeof task === 'string') return { error: { code: 'invalid-argument', message: task } };
    const t0 = performance.now();
    let entry: Entry;
    let loaded = false;
    const local = await this.localCheckpoint(task.checkpoint);
    if (typeof local !== 'string') return local;
    if (task.tokenizer && task.tokenizer !== 'char') {
      const refused = this.outsideRoots('tokenizer', task.tokenizer);
      if (refused) return refused;
    }
    try {
      const dir = await resolveCheckpoint(local);
      const key = [
        dir,
        task.tokenizer,
        await mtimeOf(join(dir, CHECKPOINT_FILES.config)),
        await mtimeOf(join(dir, CHECKPOINT_FILES.weights)),
        await mtimeOf(join(dir, CHECKPOINT_FILES.tokenizer)),
      ].join('\u0000');
      const cached = this.entries.get(key);
      if (cached) entry = cached;
      else {
        // drop older loads of the same directory (rewritten checkpoint) before loading the new one
        const same = `${dir}\u0000${task.tokenizer}\u0000`;
        for (const e of [...this.entries.values()]) if (e.key.startsWith(same)) this.drop(e.key);
        while (this.entries.size >= this.options.maxEntries) this.dropLeastRecent();
        const gen = await loadGenerator(
          dir,
          { maxNewTokens: 1, batch: GENERATE_LIMITS.maxPrompts },
          task.tokenizer || undefined,
        );
        entry = { key, gen, lastUsed: Date.now() };
        this.entries.set(key, entry);
        loaded = true;
      }
    } catch (err) {
      if (err instanceof CheckpointLoadError)
        return { error: { code: err.notFound ? 'not-found' : 'invalid-argument', message: err.message } };
      throw err;
    }
    entry.lastUsed = Date.now();
    const maxPos = entry.gen.model.config.maxPositionEmbeddings;
    if (task.maxNewTokens > maxPos)
      return {
        error: {
          code: 'invalid-argument',
          message: `maxNewTokens ${task.maxNewTokens} exceeds the model's context (${maxPos} tokens)`,
        },
      };
    const before = { ...entry.gen.stats };
    // the whole task is one native sampling call (the client sizes tasks like its --batch)
    const outputs = await entry.gen.generate(task.prompts, {
      maxNewTokens: task.maxNewTokens,
      batch: task.prompts.length,
    });
    const tooLong = entry.gen.stats.tooLong - before.tooLong;
    const outputTokens = entry.gen.stats.outputTokens - before.outputTokens;
    report?.({
      prompts: task.prompts.length,
      outputTokens,
      seconds: (performance.now() - t0) / 1000,
      loaded,
    });
    return {
      outputs: [...outputs],
      tooLong,
      outputTokens,
      worker: this.worker,
      checkpointDir: resolvedDirOf(entry.key),
    };
  }

  /** Frees checkpoints unused for longer than `idleMs`; returns their model directories. */
  pruneIdle(now = Date.now()): string[] {
    const freed: string[] = [];
    for (const e of [...this.entries.values()])
      if (now - e.lastUsed > this.options.idleMs) {
        this.drop(e.key);
        freed.push(resolvedDirOf(e.key));
      }
    return freed;
  }

  private dropLeastRecent(): void {
    let oldest: Entry | null = null;
    for (const e of this.entries.values()) if (!oldest || e.lastUsed < oldest.lastUsed) oldest = e;
    if (oldest) this.drop(oldest.key);
  }

  private drop(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    e.gen.close();
  }

  /** Frees every model. */
  close(): void {
    for (const key of [...this.entries.keys()]) this.drop(key);
  }
}

const resolvedDirOf = (key: string): string => key.slice(0, key.indexOf('\u0000'));

/** Keeps the `keep` most recently fetched checkpoint copies under `cacheDir` (and `current`); frees the rest. */
async function pruneFetched(cacheDir: string, keep: number, current: string): Promise<void> {
  const dirs: { path: string; mtime: number }[] = [];
  for (const job of await readdir(cacheDir).catch(() => [] as string[])) {
    for (const d of await readdir(join(cacheDir, job)).catch(() => [] as string[])) {
      const path = join(cacheDir, job, d);
      const info = await stat(path).catch(() => null);
      if (info?.isDirectory() && !d.endsWith('.partial')) dirs.push({ path, mtime: info.mtimeMs });
    }
  }
  dirs.sort((a, b) => b.mtime - a.mtime);
  for (const d of dirs.slice(keep))
    if (d.path !== current) await rm(d.path, { recursive: true, force: true });
}

export interface EvalGenerateWorkerOptions {
  /** Evaluation checkpoints kept loaded at once. */
  maxCheckpoints: number;
  /** An evaluation checkpoint unused for this long is freed, in ms. */
  idleMs: number;
  /** How often idle checkpoints are looked for, in ms. */
  pruneMs: number;
  /** BullMQ lock of a running task, in ms. */
  lockMs: number;
  /** Where `job:<jobId>` checkpoints are read from (null: refused), and their local copies. */
  store?: ObjectStore | null;
  cacheDir?: string;
  /** Directories Generate paths must lie below (empty: any). */
  pathRoots?: readonly string[];
}

function evalMetrics(metrics: ServiceMetrics) {
  return {
    prompts: metrics.counter({ name: 'eval_prompts_total', help: 'Evaluation prompts generated' }),
    seconds: metrics.histogram({
      name: 'eval_task_seconds',
      help: 'Time of one evaluation generation task (checkpoint load included)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    }),
    loads: metrics.counter({
      name: 'eval_checkpoint_loads_total',
      help: 'Evaluation checkpoints loaded from disk',
    }),
    errors: metrics.counter({
      name: 'eval_errors_total',
      help: 'Evaluation generation tasks answered with an error',
      labelNames: ['code'] as const,
    }),
  };
}

/**
 * The worker of the cluster-wide `eval-generate` queue (one task at a time), with its metrics
 * (spark_rollout_eval_*) and the idle-checkpoint pruner. A processor of the service skeleton.
 */
export class EvalGenerateWorker {
  private readonly generators: CheckpointGenerators;
  private worker: Worker<unknown, GenerateTaskResult> | null = null;
  private pruner: NodeJS.Timeout | null = null;
  private readonly m: ReturnType<typeof evalMetrics>;

  constructor(
    private readonly host: WorkerHost,
    private readonly options: EvalGenerateWorkerOptions,
  ) {
    this.m = evalMetrics(host.metrics);
    this.generators = new CheckpointGenerators({
      maxEntries: options.maxCheckpoints,
      idleMs: options.idleMs,
      store: options.store ?? null,
      ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
      pathRoots: options.pathRoots ?? [],
    });
  }

  async start(): Promise<void> {
    const { logger } = this.host;
    this.worker = createWorker<unknown, GenerateTaskResult>(
      EVAL_GENERATE_QUEUE,
      (job: Job<unknown, GenerateTaskResult>) => this.process(job),
      {
        url: this.host.redisUrl,
        prefix: this.host.config.redisPrefix,
        concurrency: 1,
        lockDuration: this.options.lockMs,
      },
    );
    this.worker.on('error', (err) => logger.warn({ err }, 'eval-generate worker error'));
    this.pruner = setInterval(() => {
      const freed = this.generators.pruneIdle();
      if (freed.length) logger.info({ checkpoints: freed }, 'freed idle evaluation checkpoints');
    }, this.options.pruneMs);
    this.pruner.unref();
  }

  private async process(job: Job<unknown, GenerateTaskResult>): Promise<GenerateTaskResult> {
    const result = await this.generators.run(job.data, (r) => {
      this.m.prompts.inc(r.prompts);
      this.m.seconds.observe(r.seconds);
      if (r.loaded) this.m.loads.inc();
    });
    if ('error' in result) {
      this.m.errors.inc({ code: result.error.code });
      this.host.logger.info({ task: job.id, error: result.error.message }, 'evaluation generation refused');
    }
    return result;
  }

  async close(): Promise<void> {
    if (this.pruner) clearInterval(this.pruner);
    await this.worker?.close();
    this.generators.close();
  }
}
