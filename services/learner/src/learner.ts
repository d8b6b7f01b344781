// The learner core, independent of BullMQ and gRPC: it orchestrates the job registry (job-registry.ts:
// one JobModel per job, loading and eviction), weight publishing (publisher.ts), batch building
// (batches.ts) and the update transaction (update-transaction.ts) into `learn(task)`, the exactly-once
// update of a job step (docs/architecture.md, step 5):
//   stored result → return it | version check → read groups → drop stale → advantages → old/ref log-probs
//   → deterministic shuffle → ONE pass in minibatches (one AdamW step each, micro-batch accumulation)
//   → bump version → snapshot weights → policy hash → LearnResult (SET NX) → checkpoint when due.
// A failed update, publish or checkpoint rolls the transaction back (weights, optimizer state, counters,
// version), so a retried task trains from the same point.
import { createHash } from 'node:crypto';
import { basename } from 'node:path';

import { FailedPreconditionError, InvalidArgumentError } from '@spark/runtime';
import {
  float32ToLE,
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
  type Collective,
  type GrpoSequence,
  type ScoredSequence,
  type TrainStats,
} from '@spark/kernels';

import { specTaskMix } from '@spark/method/tasks';

import {
  grpoSequences,
  microBatches,
  optimizerBatches,
  responseTokenCount,
  sftSequences,
  splitByTokens,
  type AdvantagedSequence,
} from './batches.js';
import { writeCheckpoint, type TrainerState } from './checkpoint.js';
import {
  encodeEnvelope,
  GroupDivergedError,
  ZeroStateLostError,
  JobGroup,
  type ConnectCollective,
  type Envelope,
  type GroupConfig,
  type LeaderState,
} from './group.js';
import { JobRegistry, taskIdOf, type JobModel } from './job-registry.js';
import type { LearnerMetrics } from './metrics.js';
import { heldSnapshot, PolicyPublisher, type PolicySnapshot } from './publisher.js';
import { learningRateAt } from '@spark/method/schedule';
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
  /**
   * The learner group this process is a rank of (absent or a world size of 1: a single learner, no
   * collective). The leader (rank 0) runs `learn`; a follower runs `follow` on what the leader broadcasts.
   */
  group?: { readonly config: GroupConfig; readonly connect?: ConnectCollective } | null;
}

/** A task sampled with a version the learner is not at: retrying cannot help (the coordinator must act). */
export class PolicyVersionMismatchError extends FailedPreconditionError {}

/** The result of an update (without its checkpoint), in the order the learner has always stored it. */
function updateResult(
  job: JobModel,
  batch: Batch,
  stats: TrainSummary,
  seconds: LearnResult['seconds'],
): Omit<LearnResult, 'checkpointPath'> {
  return {
    policyVersion: job.version,
    optimizerSteps: stats.steps,
    sequences: batch.sequences.length,
    tokens: stats.tokens,
    loss: stats.loss,
    kl: stats.kl,
    clipFraction: stats.clipFraction,
    gradNorm: stats.gradNorm,
    staleGroups: batch.staleGroups,
    seconds,
    learningRate: stats.learningRate,
    skippedSequences: batch.skipped,
  };
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
  /** The learner group's shape, or null for a single learner. */
  readonly groupConfig: GroupConfig | null;
  private readonly groups = new Map<string, JobGroup>();
  private readonly pinging = new Set<string>();
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(private readonly options: LearnerOptions) {
    const g = options.group?.config;
    this.groupConfig = g && g.worldSize > 1 ? g : null;
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
      follower: this.groupConfig !== null && this.groupConfig.rank > 0,
    });
  }

  /** True for a follower rank of a learner group (it trains only what the leader broadcasts). */
  get isFollower(): boolean {
    return this.groupConfig !== null && this.groupConfig.rank > 0;
  }

  /** This rank's membership of the job's learner group (created on first use); null for a single learner. */
  group(jobId: string): JobGroup | null {
    const config = this.groupConfig;
    if (!config) return null;
    let g = this.groups.get(jobId);
    if (!g) {
      g = new JobGroup({
        redis: this.options.redis,
        prefix: this.options.prefix,
        jobId,
        config,
        logger: this.options.logger,
        onFormed: () => this.options.metrics.groupFormations.inc(),
        ...(this.options.group?.connect ? { connect: this.options.group.connect } : {}),
      });
      this.groups.set(jobId, g);
    }
    return g;
  }

  /** Leaves the job's learner group (the job ended or this rank stops following it). */
  leaveGroup(jobId: string): void {
    this.groups.get(jobId)?.close();
    this.groups.delete(jobId);
  }

  /**
   * The leader's heartbeat: every `timeoutMs / 4`, each active job whose group has been idle that long gets
   * a `ping` broadcast (forming the group first when it is not formed), so followers waiting for the next
   * task stay within the collective's time-out and a lost rank is noticed between tasks. Groups of jobs no
   * longer active are closed.
   */
  startHeartbeat(): void {
    const config = this.groupConfig;
    if (!config || config.rank !== 0 || this.heartbeat) return;
    const every = Math.max(50, Math.floor(config.timeoutMs / 4));
    this.heartbeat = setInterval(() => void this.beat(every), every);
    this.heartbeat.unref();
  }

  private async beat(every: number): Promise<void> {
    for (const [jobId, g] of [...this.groups]) {
      if (!this.heartbeat) return; // closing
      if (this.pinging.has(jobId) || Date.now() - g.lastOp < every) continue;
      const active = await this.isActive(jobId).catch(() => true);
      if (!active) {
        this.leaveGroup(jobId);
        continue;
      }
      const job = this.registry.job(jobId);
      if (!job) continue;
      this.pinging.add(jobId);
      const run = job.tail.then(async () => {
        if (!this.heartbeat || Date.now() - g.lastOp < every) return;
        try {
          const c = await g.ready();
          await c.broadcastBytes(encodeEnvelope({ kind: 'ping' }), 0);
          g.lastOp = Date.now();
        } catch (err) {
          await g.fail(err);
        }
      });
      job.tail = run.catch(() => undefined).finally(() => this.pinging.delete(jobId));
    }
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

  /** Drops the job's model once its running update ended and loads it again (from its latest checkpoint). */
  async reloadJob(jobId: string): Promise<void> {
    try {
      await this.registry.dropJob(jobId);
      await this.ensureJob(jobId);
    } catch (err) {
      this.options.logger.error({ err, job: jobId }, 'cannot reload the job model');
    }
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
    const group = this.group(job.jobId);
    let c: Collective | null = null;
    let groupsRaw: string[] | null = null;
    if (group) {
      // the group takes the task together: broadcast it (with the verified groups read here), bring
      // followers that are behind to this rank's state
      // groups not verified yet fail the attempt before the group takes part (it stays formed)
      groupsRaw = task.phase === 'warmup' || task.phase === 'checkpoint' ? [] : await this.readGroups(task);
      c = await group.ready();
      try {
        await c.broadcastBytes(
          encodeEnvelope({ kind: 'task', task, groups: groupsRaw, leader: await this.leaderState(job) }),
          0,
        );
        await this.syncFollowers(job, c, null);
        if (task.phase === 'checkpoint' && this.groupConfig?.zero) await job.model.gatherOptimizerState(c);
      } catch (err) {
        await group.fail(err);
        // the last consistent state is the latest checkpoint: reload it once this task's attempt ended (the
        // coordinator rewinds to it, as after a learner restart)
        if (err instanceof ZeroStateLostError) void this.reloadJob(job.jobId);
        throw err;
      }
      group.lastOp = Date.now();
    }
    if (task.phase === 'checkpoint') return this.checkpointOnly(job, task, learnedKey);

    const started = performance.now();
    const txn = await UpdateTransaction.begin(job, { sharded: this.groupConfig?.zero ?? false });
    let batch: Batch;
    let stats: TrainSummary;
    let checkpointPath: string | undefined;
    const trainStart = performance.now();
    let publishStart: number;
    try {
      batch =
        task.phase === 'warmup'
          ? this.sftBatch(job, task)
          : await this.grpoBatch(job, task, groupsRaw ?? (await this.readGroups(task)), c);
      stats = c
        ? await this.trainGroup(job, task, batch.sequences, c)
        : await this.train(job, task, batch.sequences);
      publishStart = performance.now();
      txn.advance();
      const snap = await this.publisher.publish(job);
      if (c) await this.agree(job, c, snap.sha256);
      if (this.checkpointDue(job, task)) {
        if (c && this.groupConfig?.zero) await job.model.gatherOptimizerState(c);
        // the checkpoint carries this task's result: a learner restarted from it answers a redelivery
        checkpointPath = await this.checkpoint(
          job,
          task,
          updateResult(job, batch, stats, { logprobs: batch.logprobSeconds, train: 0, publish: 0 }),
        );
      }
    } catch (err) {
      // training, publishing or the checkpoint failed (native, Redis, disk, a rank of the group): undo the
      // whole update and re-advertise the old version when the new one was already announced; a group
      // breaks (its followers roll back too) and re-forms
      if (group) await group.fail(err);
      const readvertise = txn.versionAdvanced;
      await txn.rollback();
      if (readvertise) await this.publisher.publish(job).catch(() => undefined);
      throw err;
    }
    if (group) group.lastOp = Date.now();
    txn.commit();
    const trainSeconds = (publishStart - trainStart) / 1000 - batch.logprobSeconds;
    const result: LearnResult = {
      ...updateResult(job, batch, stats, {
        logprobs: batch.logprobSeconds,
        train: Math.max(0, trainSeconds),
        publish: (performance.now() - publishStart) / 1000,
      }),
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
  /** The task's verified groups as stored (JSON text, in the task's order); every one must be there. */
  private async readGroups(task: LearnTask): Promise<string[]> {
    const { redis, prefix } = this.options;
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
    return raw.map((text) => text ?? '');
  }

  /**
   * GRPO: the verified groups with their advantages, old and reference log-probs. In a learner group each
   * rank computes the log-probs of the sequences it trains only (its shares of the minibatches); the others
   * carry none.
   */
  private async grpoBatch(
    job: JobModel,
    task: LearnTask,
    raw: readonly string[],
    c: Collective | null,
  ): Promise<Batch> {
    const { metrics } = this.options;
    if (raw.length !== task.groupIds.length)
      throw new InvalidArgumentError(
        `task ${taskIdOf(task)}: ${raw.length} groups for ${task.groupIds.length} ids`,
      );
    const groups = raw.map((text) =>
      parseVerifiedGroup(parseJson(text, `verified group of ${taskIdOf(task)}`)),
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
    const mine = c ? this.ownSequences(job, task, seqs) : seqs;
    const base = mine.map((s) => ({ tokens: s.tokens, promptLen: s.promptLen }));
    const old = base.length ? await job.model.logprobs(base) : [];
    const ref = task.hyper.klCoefficient > 0 && base.length ? await job.reference.logprobs(base) : null;
    const logprobSeconds = (performance.now() - t0) / 1000;
    metrics.logprobSeconds.observe(logprobSeconds);
    const at = new Map(mine.map((s, i) => [s, i]));
    const none = new Float32Array(0);
    const sequences: GrpoSequence[] = seqs.map((s) => {
      const i = at.get(s);
      return {
        tokens: s.tokens,
        promptLen: s.promptLen,
        advantage: s.advantage,
        oldLogprobs: i === undefined ? none : (old[i] as Float32Array),
        refLogprobs: i === undefined || !ref ? null : (ref[i] as Float32Array),
      };
    });
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
      const adamw = adamwOf(h, lr);
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

  /** The minibatches of the optimizer pass, whole (every rank of a group cuts the same ones). */
  private minibatchesOf<S extends { readonly tokens: ArrayLike<number> }>(
    job: JobModel,
    task: LearnTask,
    sequences: readonly S[],
  ): S[][] {
    return optimizerBatches(sequences, {
      seed: job.spec.seed,
      step: task.step,
      phase: task.phase,
      miniBatchSize: task.hyper.miniBatchSize,
      microBatchSize: task.hyper.miniBatchSize,
    }).map((micro) => micro.flat());
  }

  /** The sequences this rank trains: its token-balanced share of every minibatch. */
  private ownSequences(
    job: JobModel,
    task: LearnTask,
    seqs: readonly AdvantagedSequence[],
  ): AdvantagedSequence[] {
    const g = this.groupConfig as GroupConfig;
    return this.minibatchesOf(job, task, seqs).flatMap((mb) => splitByTokens(mb, g.worldSize)[g.rank] ?? []);
  }

  /**
   * The optimizer pass of a learner group: the same minibatches as `train`, each split over the ranks by
   * token count; every rank accumulates its share's gradients scaled by 1 / (the WHOLE minibatch's response
   * tokens), so the summed gradient is the single learner's token mean; the sum over ranks (all-reduce, or
   * ZeRO-1's reduce-scatter + sharded AdamW + all-gather) and one AdamW step follow on every rank.
   */
  private async trainGroup(
    job: JobModel,
    task: LearnTask,
    sequences: readonly (ScoredSequence | GrpoSequence)[],
    c: Collective,
  ): Promise<TrainSummary> {
    const g = this.groupConfig as GroupConfig;
    const h = task.hyper;
    const rl = task.phase !== 'warmup';
    const loss = rl
      ? ({ kind: 'grpo', clipEps: h.clipEpsilon, klCoef: h.klCoefficient } as const)
      : ({ kind: 'sft' } as const);
    const minibatches = this.minibatchesOf(job, task, sequences);
    let tokens = 0;
    let lossSum = 0;
    let klSum = 0;
    let clipSum = 0;
    let gradSum = 0;
    let collectiveSeconds = 0;
    let lr = rl ? this.rlLearningRate(job, task) : h.learningRate;
    for (const mb of minibatches) {
      if (rl) lr = this.rlLearningRate(job, task);
      const adamw = adamwOf(h, lr);
      const total = responseTokenCount(mb);
      if (total === 0)
        throw new InvalidArgumentError(`task ${taskIdOf(task)}: no response tokens in a minibatch`);
      const mine = splitByTokens(mb, g.worldSize)[g.rank] ?? [];
      await job.model.zeroGrads();
      let lossPart = 0;
      let klPart = 0;
      let clipPart = 0;
      let tokenPart = 0;
      for (const micro of microBatches(mine, h.microBatchSize)) {
        const s = await job.model.accumulateGrads(micro, loss, 1 / total);
        lossPart += s.lossSum;
        klPart += s.klSum;
        clipPart += s.clipped;
        tokenPart += s.tokens;
      }
      const t0 = performance.now();
      let gradNorm: number;
      if (g.zero) {
        gradNorm = await job.model.applyOptimizerSharded(c, adamw);
      } else {
        await job.model.allreduceGrads(c);
        gradNorm = await job.model.applyOptimizer(adamw);
      }
      const sums = await c.allreduceSumF64(Float64Array.of(lossPart, klPart, clipPart, tokenPart));
      collectiveSeconds += (performance.now() - t0) / 1000;
      job.optimizerSteps += 1;
      if (rl) job.rlOptimizerSteps += 1;
      tokens += sums[3] as number;
      lossSum += sums[0] as number;
      klSum += sums[1] as number;
      clipSum += sums[2] as number;
      gradSum += gradNorm;
    }
    this.options.metrics.collectiveSeconds.observe(collectiveSeconds);
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

  /** What a follower must match before it trains: the leader's version, counters and weights' checksum. */
  private async leaderState(job: JobModel): Promise<LeaderState> {
    return {
      version: job.version,
      optimizerSteps: job.optimizerSteps,
      rlOptimizerSteps: job.rlOptimizerSteps,
      reference: job.reference !== null,
      sha256: job.snapshot(job.version)?.sha256 ?? paramsSha(await job.model.getParams()),
    };
  }

  /**
   * Brings followers that are not at the leader's state (a rank that joined or re-joined, or one whose last
   * update the leader rolled back) to it: every rank says whether it is behind (all-reduce), and if any is
   * the leader broadcasts its weights, AdamW state and reference. `leader` is null on the leader.
   */
  private async syncFollowers(job: JobModel, c: Collective, leader: LeaderState | null): Promise<void> {
    const g = this.groupConfig as GroupConfig;
    let behind = 0;
    if (leader) {
      const same =
        job.version === leader.version &&
        job.optimizerSteps === leader.optimizerSteps &&
        job.rlOptimizerSteps === leader.rlOptimizerSteps &&
        (job.reference !== null) === leader.reference &&
        paramsSha(await job.model.getParams()) === leader.sha256;
      behind = same ? 0 : 1;
    }
    const votes = await c.allreduceSumF64(Float64Array.of(behind));
    if ((votes[0] as number) === 0) return;
    const root = g.rank === 0;
    const n = job.model.numParams;
    const f32 = async (mine: Float32Array | null): Promise<Float32Array> => {
      const bytes = await c.broadcastBytes(mine ? float32ToLE(mine) : null, 0);
      if (bytes.byteLength !== n * 4)
        throw new GroupDivergedError(
          `job ${job.jobId}: state broadcast of ${bytes.byteLength} bytes, expected ${n * 4}`,
        );
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    };
    // under ZeRO-1 the leader holds the whole AdamW state only until its first sharded step (fresh, or just
    // reloaded from a checkpoint); after that a lost rank's slice is gone
    const opt = root ? await job.model.getOptimizerState().catch(() => null) : null;
    const head = await c.broadcastBytes(
      root ? Buffer.from(JSON.stringify({ step: opt?.step ?? 0, whole: opt !== null })) : null,
      0,
    );
    const said = JSON.parse(Buffer.from(head).toString('utf8')) as { step: number; whole: boolean };
    if (!said.whole) {
      throw new ZeroStateLostError(
        `job ${job.jobId}: a rank of the ZeRO-1 learner group is not at the leader's state and the AdamW moments are sharded (a lost rank's slice is gone): the leader reloads the job from its latest checkpoint`,
      );
    }
    const params = await f32(root ? await job.model.getParams() : null);
    const m = await f32(opt?.m ?? null);
    const v = await f32(opt?.v ?? null);
    const ref =
      leader?.reference || (root && job.reference)
        ? await f32(root && job.reference ? await job.reference.getParams() : null)
        : null;
    if (root || !leader || behind === 0) return;
    const step = said.step;
    if (!Number.isSafeInteger(step) || step < 0)
      throw new GroupDivergedError(`job ${job.jobId}: bad AdamW step ${step} from the leader`);
    if (ref) {
      job.reference?.free();
      job.reference = null;
      await job.model.setParams(ref);
      job.reference = await job.model.cloneFrozen();
    } else if (job.reference) {
      job.reference.free();
      job.reference = null;
    }
    await job.model.setParams(params);
    await job.model.setOptimizerState({ m, v, step });
    job.version = leader.version;
    job.optimizerSteps = leader.optimizerSteps;
    job.rlOptimizerSteps = leader.rlOptimizerSteps;
    this.options.logger.info(
      { job: job.jobId, version: job.version },
      "follower brought to the leader's state",
    );
  }

  /**
   * After an update every rank checks that it holds the leader's policy version and weights (the leader's
   * version and sha256 broadcast, each rank compares, the disagreements all-reduced): any disagreement fails
   * the update on every rank (GroupDivergedError), which then rolls back.
   */
  private async agree(job: JobModel, c: Collective, leaderSha: string | null): Promise<void> {
    const root = leaderSha !== null;
    const mine = root ? leaderSha : paramsSha(await job.model.getParams());
    const said = await c.broadcastBytes(root ? Buffer.from(`${job.version}:${mine}`) : null, 0);
    const expected = `${job.version}:${mine}`;
    const text = Buffer.from(said).toString('utf8');
    const disagree = text === expected ? 0 : 1;
    const votes = await c.allreduceSumF64(Float64Array.of(disagree));
    if ((votes[0] as number) > 0) {
      this.options.metrics.groupDisagreements.inc();
      throw new GroupDivergedError(
        `job ${job.jobId}: ${votes[0]} rank(s) of the learner group disagree with the leader after the update (leader ${text}, rank ${(this.groupConfig as GroupConfig).rank} ${expected}); the update is rolled back on every rank`,
      );
    }
  }

  /**
   * A follower's part of one envelope from the leader: a heartbeat is nothing; a task is trained with the
   * group exactly as the leader trains it (same batch, this rank's shares, the same collectives in the same
   * order), under an update transaction that rolls back when any rank fails. Nothing is published or stored.
   */
  async follow(job: JobModel, envelope: Envelope, c: Collective): Promise<void> {
    if (envelope.kind === 'ping') return;
    const { task, groups, leader } = envelope;
    await this.syncFollowers(job, c, leader);
    if (task.phase === 'checkpoint') {
      if (this.groupConfig?.zero) await job.model.gatherOptimizerState(c);
      return;
    }
    if (task.policyVersion !== job.version)
      throw new GroupDivergedError(
        `job ${job.jobId}: task at version ${task.policyVersion}, this rank is at ${job.version}`,
      );
    const txn = await UpdateTransaction.begin(job, { sharded: this.groupConfig?.zero ?? false });
    try {
      const batch =
        task.phase === 'warmup' ? this.sftBatch(job, task) : await this.grpoBatch(job, task, groups, c);
      await this.trainGroup(job, task, batch.sequences, c);
      txn.advance();
      await this.agree(job, c, null);
      if (this.checkpointDue(job, task) && this.groupConfig?.zero) await job.model.gatherOptimizerState(c);
    } catch (err) {
      await txn.rollback();
      throw err;
    }
    txn.commit();
    this.options.metrics.policyVersion.set(job.version);
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

  /**
   * Writes `<checkpointDir>/step-<n>/` now (weights, config, optimizer, reference, trainer_state.json, and
   * `result`: the result of the training task whose update it holds).
   */
  async checkpoint(
    job: JobModel,
    task: { step: number; phase: string; totalOptimizerSteps?: number },
    result?: TrainerState['result'],
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
      ...(result ? { result } : {}),
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

  /** Frees every model (after the workers stopped) and leaves every learner group. */
  close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const jobId of [...this.groups.keys()]) this.leaveGroup(jobId);
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

/** sha256 of a parameter buffer as float32 LE (the policy hash's checksum). */
function paramsSha(params: Float32Array): string {
  return createHash('sha256').update(float32ToLE(params)).digest('hex');
}

/** The optimizer settings of one optimizer step: the task's hyper-parameters at learning rate `lr`. */
function adamwOf(h: LearnTask['hyper'], lr: number): AdamWParams {
  return {
    ...DEFAULT_ADAMW,
    lr,
    beta1: h.beta1,
    beta2: h.beta2,
    weightDecay: h.weightDecay,
    maxGradNorm: h.maxGradNorm,
  };
}
