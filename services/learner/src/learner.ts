// The learner core, independent of BullMQ and gRPC: it orchestrates the job registry (job-registry.ts:
// one JobModel per job, loading and eviction), weight publishing (publisher.ts), batch building
// (batches.ts) and the update transaction (update-transaction.ts) into `learn(task)`, the exactly-once
// update of a job step (docs/architecture.md, step 5):
//   stored result → return it | version check → read groups → drop stale → advantages → old/ref log-probs
//   → deterministic shuffle → ONE pass in minibatches (one AdamW step each, micro-batch accumulation)
//   → bump version → snapshot weights → policy hash → LearnResult (SET NX) → checkpoint when due.
// A failed update, publish or checkpoint rolls the transaction back (weights, optimizer state, counters,
// version), so a retried task trains from the same point.
import { basename } from 'node:path';

import { FailedPreconditionError, InvalidArgumentError } from '@spark/runtime';
import {
  jobKeys,
  publishCheckpoint,
  parseJson,
  parseLearnResult,
  parseLearnTask,
  parseVerifiedGroup,
  stepDirName,
  WARMUP_CHECKPOINT,
  type LearnResult,
  type LearnTask,
  type TaskMix,
} from '@spark/contract';
import type { JobSpec } from '@spark/protocol';
import type { Device } from '@spark/kernels';
import type { Logger } from '@spark/runtime/logging';
import type { ObjectStore } from '@spark/runtime/storage';
import type { Redis } from '@spark/runtime/redis';
import {
  DEFAULT_ADAMW,
  type AdamWParams,
  type GrpoSequence,
  type ScoredSequence,
  type TrainStats,
} from '@spark/kernels';

import { specTaskMix } from '@spark/method/tasks';

import { grpoSequences, optimizerBatches, sftSequences } from './batches.js';
import { writeCheckpoint, type TrainerState } from './checkpoint.js';
import { JobRegistry, type JobModel } from './job-registry.js';
import type { LearnerMetrics } from './metrics.js';
import { heldSnapshot, PolicyPublisher, type PolicySnapshot } from './publisher.js';
import { learningRateAt } from './schedule.js';
import { UpdateTransaction } from './update-transaction.js';

export { JobModel } from './job-registry.js';
export type { PolicySnapshot } from './publisher.js';

export interface LearnerOptions {
  redis: Redis;
  prefix: string;
  logger: Logger;
  metrics: LearnerMetrics;
  /** Where a job's checkpoints go when its spec names no checkpoint dir: `<dataDir>/<jobId>`. */
  dataDir: string;
  /** The PolicyService address samplers should use (written to the job's policy hash). */
  advertisedAddress: () => string;
  /** Versions kept per job for GetPolicy (the latest and the one before by default). */
  keepVersions: number;
  /** Job models held in memory; the least recently used inactive job is evicted beyond this. */
  maxModels: number;
  /** Most SFT examples or sampled sequences one task may carry. */
  maxSequencesPerTask: number;
  /** Where job models are created and loaded (default 'cpu'). */
  device?: Device;
  /**
   * The object store every checkpoint is published to after it is written locally (`checkpoints/<jobId>/…`,
   * read by rollout workers and `spark eval`), or null (the checkpoint directory is the only copy).
   */
  checkpointStore?: ObjectStore | null;
}

/** A task sampled with a version the learner is not at: retrying cannot help (the coordinator must act). */
export class PolicyVersionMismatchError extends FailedPreconditionError {}

function taskIdOf(task: { step: number; phase: string }): string {
  return `${task.step}/${task.phase}`;
}

/**
 * Parses a LearnTask at the queue boundary (the contract's schema: InvalidArgumentError lists every bad
 * field), then checks what the schema cannot: the task belongs to the queue's job and fits the learner's
 * per-task bound.
 */
export function validateLearnTask(data: unknown, jobId: string, maxSequences: number): LearnTask {
  const task = parseLearnTask(data);
  const problems: string[] = [];
  if (task.jobId !== jobId) problems.push(`jobId ${task.jobId} is not the queue's job ${jobId}`);
  if (task.groupIds.length > maxSequences) problems.push(`groupIds holds more than ${maxSequences} ids`);
  if (task.sft.length > maxSequences) problems.push(`sft holds more than ${maxSequences} examples`);
  if (problems.length) throw new InvalidArgumentError(`invalid LearnTask for job ${jobId}`, problems);
  return task;
}

/** What the optimizer pass reports. */
interface TrainSummary {
  steps: number;
  tokens: number;
  loss: number;
  kl: number;
  clipFraction: number;
  gradNorm: number;
  learningRate: number;
}

/** A phase's sequences ready to train, with what building them dropped. */
interface Batch {
  readonly sequences: (ScoredSequence | GrpoSequence)[];
  readonly skipped: number;
  readonly staleGroups: number;
  readonly logprobSeconds: number;
}

/** The learner: job models, updates and published snapshots. */
export class Learner {
  private readonly registry: JobRegistry;
  private readonly publisher: PolicyPublisher;

  constructor(private readonly options: LearnerOptions) {
    this.publisher = new PolicyPublisher({
      redis: options.redis,
      prefix: options.prefix,
      metrics: options.metrics,
      keepVersions: options.keepVersions,
      advertisedAddress: options.advertisedAddress,
    });
    this.registry = new JobRegistry({
      redis: options.redis,
      prefix: options.prefix,
      logger: options.logger,
      metrics: options.metrics,
      dataDir: options.dataDir,
      maxModels: options.maxModels,
      device: options.device ?? 'cpu',
      publish: (job) => this.publisher.publish(job),
      checkpointStore: options.checkpointStore ?? null,
    });
  }

  /** Job ids whose models are in memory. */
  get jobIds(): string[] {
    return this.registry.jobIds;
  }

  /** A loaded job, or null. */
  job(jobId: string): JobModel | null {
    return this.registry.job(jobId);
  }

  /** The job's model, created on first use (from its own last checkpoint when there is one). */
  ensureJob(jobId: string): Promise<JobModel> {
    return this.registry.ensureJob(jobId);
  }

  /** True when the job exists in Redis and is active (GetPolicy may load it on demand). */
  isActive(jobId: string): Promise<boolean> {
    return this.registry.isActive(jobId);
  }

  /** Drops a job's model (e.g. after it ended). */
  dropJob(jobId: string): Promise<void> {
    return this.registry.dropJob(jobId);
  }

  /** The snapshot GetPolicy streams; NotFound for an unknown job, FailedPrecondition for a version not held. */
  async snapshotFor(jobId: string, version: number): Promise<PolicySnapshot> {
    return heldSnapshot(await this.registry.served(jobId), version);
  }

  /** One LearnTask, exactly once in effect. */
  async learn(task: LearnTask): Promise<LearnResult> {
    const { redis, prefix } = this.options;
    const learnedKey = jobKeys.learned(prefix, task.jobId, task.step, task.phase);
    const stored = await redis.get(learnedKey);
    if (stored !== null) {
      this.options.metrics.replayedUpdates.inc();
      return parseLearnResult(parseJson(stored, learnedKey));
    }
    const job = await this.ensureJob(task.jobId);
    const run = job.tail.then(() => this.learnLocked(job, task, learnedKey));
    job.tail = run.catch(() => undefined);
    return run;
  }

  private async learnLocked(job: JobModel, task: LearnTask, learnedKey: string): Promise<LearnResult> {
    const { redis, metrics } = this.options;
    const again = await redis.get(learnedKey);
    if (again !== null) {
      metrics.replayedUpdates.inc();
      return parseLearnResult(parseJson(again, learnedKey));
    }
    const taskId = taskIdOf(task);
    if (job.last?.taskId === taskId && task.policyVersion === job.version - 1) {
      // trained before, but the result never reached Redis: store and return it, train nothing
      await redis.set(learnedKey, JSON.stringify(job.last.result), 'NX');
      metrics.replayedUpdates.inc();
      return job.last.result;
    }
    if (task.policyVersion !== job.version) {
      throw new PolicyVersionMismatchError(
        `job ${task.jobId} task ${taskId} was sampled with policy version ${task.policyVersion}, the learner is at ${job.version}`,
      );
    }
    if (task.phase === 'checkpoint') return this.checkpointOnly(job, task, learnedKey);

    const started = performance.now();
    const txn = await UpdateTransaction.begin(job);
    let batch: Batch;
    let stats: TrainSummary;
    let checkpointPath: string | undefined;
    const trainStart = performance.now();
    let publishStart: number;
    try {
      batch = task.phase === 'warmup' ? this.sftBatch(job, task) : await this.grpoBatch(job, task);
      stats = await this.train(job, task, batch.sequences);
      publishStart = performance.now();
      txn.advance();
      await this.publisher.publish(job);
      if (this.checkpointDue(job, task)) checkpointPath = await this.checkpoint(job, task);
    } catch (err) {
      // training, publishing or the checkpoint failed (native, Redis, disk): undo the whole update and
      // re-advertise the old version when the new one was already announced
      const readvertise = txn.versionAdvanced;
      await txn.rollback();
      if (readvertise) await this.publisher.publish(job).catch(() => undefined);
      throw err;
    }
    txn.commit();
    const trainSeconds = (publishStart - trainStart) / 1000 - batch.logprobSeconds;
    const result: LearnResult = {
      policyVersion: job.version,
      optimizerSteps: stats.steps,
      sequences: batch.sequences.length,
      tokens: stats.tokens,
      loss: stats.loss,
      kl: stats.kl,
      clipFraction: stats.clipFraction,
      gradNorm: stats.gradNorm,
      staleGroups: batch.staleGroups,
      seconds: {
        logprobs: batch.logprobSeconds,
        train: Math.max(0, trainSeconds),
        publish: (performance.now() - publishStart) / 1000,
      },
      learningRate: stats.learningRate,
      skippedSequences: batch.skipped,
      ...(checkpointPath ? { checkpointPath } : {}),
    };
    job.last = { taskId, result };
    const wrote = await redis.set(learnedKey, JSON.stringify(result), 'NX');
    const stored = wrote === 'OK' ? null : await redis.get(learnedKey);
    const final = stored === null ? result : parseLearnResult(parseJson(stored, learnedKey));
    this.record(job, task, batch, stats, result, (performance.now() - started) / 1000);
    return final;
  }

  private record(
    job: JobModel,
    task: LearnTask,
    batch: Batch,
    stats: TrainSummary,
    result: LearnResult,
    seconds: number,
  ): void {
    const { metrics, logger } = this.options;
    const phase = task.phase;
    metrics.updates.inc({ phase });
    metrics.optimizerSteps.inc({ phase }, stats.steps);
    metrics.sequences.inc({ phase }, batch.sequences.length);
    metrics.tokens.inc({ phase }, stats.tokens);
    metrics.staleGroups.inc(batch.staleGroups);
    metrics.skippedSequences.inc(batch.skipped);
    metrics.updateSeconds.observe({ phase }, seconds);
    metrics.loss.set({ phase }, stats.loss);
    metrics.kl.set({ phase }, stats.kl);
    metrics.clipFraction.set({ phase }, stats.clipFraction);
    metrics.gradNorm.set({ phase }, stats.gradNorm);
    metrics.learningRate.set({ phase }, stats.learningRate);
    logger.info(
      {
        job: task.jobId,
        step: task.step,
        phase,
        version: job.version,
        sequences: result.sequences,
        loss: result.loss,
        staleGroups: result.staleGroups,
        seconds: result.seconds,
      },
      'update done',
    );
  }

  /** A `checkpoint` task: writes the current weights as `step-<n>` without training; the version stays. */
  private async checkpointOnly(job: JobModel, task: LearnTask, learnedKey: string): Promise<LearnResult> {
    const t0 = performance.now();
    const checkpointPath = await this.checkpoint(job, task);
    const result: LearnResult = {
      policyVersion: job.version,
      optimizerSteps: 0,
      sequences: 0,
      tokens: 0,
      loss: 0,
      kl: 0,
      clipFraction: 0,
      gradNorm: 0,
      staleGroups: 0,
      seconds: { logprobs: 0, train: 0, publish: (performance.now() - t0) / 1000 },
      learningRate: 0,
      skippedSequences: 0,
      checkpointPath,
    };
    await this.options.redis.set(learnedKey, JSON.stringify(result), 'NX');
    return result;
  }

  /** Warm-up: (prompt, target) pairs as chat prompt + target + EOS, trained with the SFT loss. */
  private sftBatch(job: JobModel, task: LearnTask): Batch {
    const built = sftSequences(task.sft, job.model.config.maxPositionEmbeddings, taskIdOf(task));
    return { ...built, logprobSeconds: 0 };
  }

  /** GRPO: the verified groups with their advantages, old and reference log-probs. */
  private async grpoBatch(job: JobModel, task: LearnTask): Promise<Batch> {
    const { redis, prefix, metrics } = this.options;
    const ids = [...task.groupIds];
    const raw = ids.length
      ? await redis.hmget(jobKeys.groups(prefix, task.jobId, task.step, task.phase), ...ids)
      : [];
    const missing = ids.filter((_, i) => raw[i] === null);
    if (missing.length) {
      throw new FailedPreconditionError(
        `task ${taskIdOf(task)}: ${missing.length} group(s) not verified yet, e.g. ${missing.slice(0, 3).join(', ')}`,
      );
    }
    const groups = raw.map((text) =>
      parseVerifiedGroup(parseJson(text ?? '', `verified group of ${taskIdOf(task)}`)),
    );
    const built = grpoSequences(groups, {
      version: job.version,
      vocabSize: job.model.config.vocabSize,
      maxLen: job.model.config.maxPositionEmbeddings,
      maxSequences: this.options.maxSequencesPerTask,
      taskId: taskIdOf(task),
    });
    const seqs = built.sequences;
    if (!seqs.length)
      return { sequences: [], skipped: built.skipped, staleGroups: built.staleGroups, logprobSeconds: 0 };
    if (!job.reference) {
      // RL starts: freeze the reference (the weights after warm-up) and start AdamW afresh, as RL from a
      // separately trained model would: moments built on the warm-up's large SFT gradients would shrink
      // every RL step (measured: held-out answers flat over 24 SPARK steps with them, +20 points without)
      job.reference = await job.model.cloneFrozen();
      const n = job.model.numParams;
      await job.model.setOptimizerState({ m: new Float32Array(n), v: new Float32Array(n), step: 0 });
    }
    const t0 = performance.now();
    const base = seqs.map((s) => ({ tokens: s.tokens, promptLen: s.promptLen }));
    const old = await job.model.logprobs(base);
    const ref = task.hyper.klCoefficient > 0 ? await job.reference.logprobs(base) : null;
    const logprobSeconds = (performance.now() - t0) / 1000;
    metrics.logprobSeconds.observe(logprobSeconds);
    const sequences: GrpoSequence[] = seqs.map((s, i) => ({
      tokens: s.tokens,
      promptLen: s.promptLen,
      advantage: s.advantage,
      oldLogprobs: old[i] as Float32Array,
      refLogprobs: ref ? (ref[i] as Float32Array) : null,
    }));
    return { sequences, skipped: built.skipped, staleGroups: built.staleGroups, logprobSeconds };
  }

  /** ONE pass over the shuffled sequences: one AdamW step per minibatch, micro-batches accumulated. */
  private async train(
    job: JobModel,
    task: LearnTask,
    sequences: readonly (ScoredSequence | GrpoSequence)[],
  ): Promise<TrainSummary> {
    const h = task.hyper;
    const rl = task.phase !== 'warmup';
    const minibatches = optimizerBatches(sequences, {
      seed: job.spec.seed,
      step: task.step,
      phase: task.phase,
      miniBatchSize: h.miniBatchSize,
      microBatchSize: h.microBatchSize,
    });
    let tokens = 0;
    let lossSum = 0;
    let klSum = 0;
    let clipSum = 0;
    let gradSum = 0;
    let lr = rl ? this.rlLearningRate(job, task) : h.learningRate;
    for (const micro of minibatches) {
      if (rl) lr = this.rlLearningRate(job, task);
      const adamw: AdamWParams = {
        ...DEFAULT_ADAMW,
        lr,
        beta1: h.beta1,
        beta2: h.beta2,
        weightDecay: h.weightDecay,
        maxGradNorm: h.maxGradNorm,
      };
      const stats: TrainStats = rl
        ? await job.model.trainStep(
            micro,
            { kind: 'grpo', clipEps: h.clipEpsilon, klCoef: h.klCoefficient },
            adamw,
          )
        : await job.model.trainStep(micro, { kind: 'sft' }, adamw);
      job.optimizerSteps += 1;
      if (rl) job.rlOptimizerSteps += 1;
      tokens += stats.tokens;
      lossSum += stats.loss * stats.tokens;
      klSum += stats.kl * stats.tokens;
      clipSum += stats.clipFraction * stats.tokens;
      gradSum += stats.gradNorm;
    }
    const steps = minibatches.length && sequences.length ? minibatches.length : 0;
    return {
      steps,
      tokens,
      loss: tokens ? lossSum / tokens : 0,
      kl: tokens ? klSum / tokens : 0,
      clipFraction: tokens ? clipSum / tokens : 0,
      gradNorm: steps ? gradSum / steps : 0,
      learningRate: lr,
    };
  }

  private rlLearningRate(job: JobModel, task: LearnTask): number {
    return learningRateAt(
      job.schedule,
      task.hyper.learningRate,
      job.rlOptimizerSteps,
      task.totalOptimizerSteps ?? null,
    );
  }

  /**
   * Every checkpointInterval RL steps (step % interval = 0, step > 0) after the step's last update (not
   * after a `midStep` policy update), and after a `final` task: the job's last RL update, or its last warm-up step (the `warmup` checkpoint: the base model RL starts from).
   */
  private checkpointDue(job: JobModel, task: LearnTask): boolean {
    if (task.final) return true;
    // a reward phase of this step follows: checkpoints mark step ends, where a job can resume
    if (task.midStep) return false;
    const every = job.spec.checkpointInterval;
    return task.phase !== 'warmup' && every > 0 && task.step > 0 && task.step % every === 0;
  }

  /** Writes `<checkpointDir>/step-<n>/` now (weights, config, optimizer, reference, trainer_state.json). */
  async checkpoint(
    job: JobModel,
    task: { step: number; phase: string; totalOptimizerSteps?: number },
  ): Promise<string> {
    const t0 = performance.now();
    const trainer: TrainerState = {
      jobId: job.jobId,
      step: task.step,
      phase: task.phase,
      policyVersion: job.version,
      optimizerSteps: job.optimizerSteps,
      rlOptimizerSteps: job.rlOptimizerSteps,
      totalOptimizerSteps: task.totalOptimizerSteps ?? null,
      schedule: job.schedule,
      learningRate: null,
      savedAt: new Date().toISOString(),
      taskMix: checkpointTaskMix(job.spec),
    };
    const dir = await writeCheckpoint(
      job.checkpointDir,
      job.model,
      job.reference,
      trainer,
      task.phase === 'warmup' ? WARMUP_CHECKPOINT : stepDirName(task.step),
    );
    const store = this.options.checkpointStore;
    if (store) {
      // a failure fails the task (retried): a checkpoint readers cannot reach is not a checkpoint yet
      const bytes = await publishCheckpoint(store, job.jobId, job.checkpointDir, basename(dir), task.step);
      this.options.logger.info({ job: job.jobId, store: store.url, bytes }, 'checkpoint published');
    }
    this.options.metrics.checkpoints.inc();
    this.options.metrics.checkpointSeconds.observe((performance.now() - t0) / 1000);
    this.options.logger.info({ job: job.jobId, step: task.step, dir }, 'checkpoint written');
    return dir;
  }

  /** Frees every model (after the workers stopped). */
  close(): Promise<void> {
    return this.registry.close();
  }
}

/**
 * The task mix recorded in a checkpoint's trainer_state.json (@spark/contract TaskMix): the built-in
 * tasks' resolved families and difficulties (the coordinator's mix), or the training file alone.
 */
export function checkpointTaskMix(
  spec: Pick<JobSpec, 'dataset' | 'taskFamilies' | 'taskMaxDifficulty'>,
): TaskMix {
  const dataset = spec.dataset || 'builtin';
  if (dataset !== 'builtin') return { dataset, families: [], difficulties: [] };
  const mix = specTaskMix(spec);
  return { dataset, families: [...mix.families], difficulties: [...mix.difficulties] };
}
