// The rollout workers' side of JobService.Generate (evaluation through the cluster): GenerateTasks from
// the cluster-wide `eval-generate` queue are answered with the greedy generator of checkpoint.ts, on a
// model loaded from the task's checkpoint path (a directory every worker can read, as the learner's
// checkpoints are on a shared volume). Loaded checkpoints are cached by resolved model directory,
// tokenizer and the files' modification times (a rewritten checkpoint is reloaded), at most `maxEntries`
// of them (least recently used freed), and freed after `idleMs` without use. A missing or unusable
// checkpoint and a bad request are answered with an `error` result (not retried); anything else throws
// so that BullMQ retries the task (on any worker).
import { stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';

import { InvalidArgumentError } from '@spark/runtime';
import {
  CHECKPOINT_FILES,
  GENERATE_LIMITS,
  parseGenerateTask as parseContractGenerateTask,
  type GenerateTask,
  type GenerateTaskResult,
} from '@spark/contract';

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
  if (!isAbsolute(task.checkpoint)) return `checkpoint must be an absolute path, got ${task.checkpoint}`;
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

  constructor(private readonly options: { readonly maxEntries: number; readonly idleMs: number }) {}

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
    try {
      const dir = await resolveCheckpoint(task.checkpoint);
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
