// The learner core, independent of BullMQ and gRPC: one JobState per job (the native policy model, the
// frozen reference made when RL starts, the policy version, the optimizer-step counters of the lr schedule
// and the immutable weight snapshots PolicyService streams), and `learn(task)`, the exactly-once update of
// cluster-plan.md step 5:
//   stored result → return it | version check → read groups → drop stale → advantages → old/ref log-probs
//   → deterministic shuffle → ONE pass in minibatches (one AdamW step each, micro-batch accumulation)
//   → bump version → snapshot weights → policy hash → LearnResult (SET NX) → checkpoint when due.
// A failed update rolls the weights and optimizer state back, so a retried task trains from the same point.
import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { join } from 'node:path';

import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@spark/runtime';
import {
  CHECKPOINT_FILES,
  float32ToLE,
  JOB_ID_PATTERN,
  jobKeys,
  parseJson,
  parseLearnResult,
  parseLearnTask,
  parseVerifiedGroup,
  readJobSpec,
  stepDirName,
  WARMUP_CHECKPOINT,
  type LearnResult,
  type LearnTask,
} from '@spark/contract';
import type { Logger } from '@spark/runtime/logging';
import type { JobSpec } from '@spark/protocol';
import type { Redis } from '@spark/runtime/redis';
import { charTokenizer, renderPromptTokens } from '@spark/method/tokenizers';
import {
  DEFAULT_ADAMW,
  Model,
  presetNames,
  toHfConfig,
  type AdamWParams,
  type GrpoSequence,
  type ScoredSequence,
  type TrainStats,
} from '@spark/kernels';

import { latestCheckpoint, loadReference, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { chunks, groupAdvantages, mixSeed, shuffled } from './grpo.js';
import type { LearnerMetrics } from './metrics.js';
import { learningRateAt, scheduleFromSpec, type LrSchedule } from './schedule.js';

/** One published policy version: an immutable float32 LE byte buffer with its checksum. */
export interface PolicySnapshot {
  readonly jobId: string;
  readonly version: number;
  readonly bytes: Buffer;
  readonly sha256: string;
  readonly configJson: string;
}

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
}

/** The state of one job on this learner. */
export class JobState {
  reference: Model | null = null;
  version = 0;
  /** AdamW steps of every phase. */
  optimizerSteps = 0;
  /** AdamW steps of the RL phases (policy + reward): the position on the lr schedule. */
  rlOptimizerSteps = 0;
  snapshots: PolicySnapshot[] = [];
  lastUsed = Date.now();
  /** The last task trained and its result, to answer a redelivery whose stored result was lost. */
  last: { taskId: string; result: LearnResult } | null = null;
  /** Serialises updates and checkpoints of this job. */
  tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly jobId: string,
    readonly spec: JobSpec,
    readonly model: Model,
    readonly schedule: LrSchedule,
    readonly checkpointDir: string,
  ) {}

  get configJson(): string {
    return JSON.stringify(toHfConfig(this.model.config));
  }

  snapshot(version: number): PolicySnapshot | null {
    return this.snapshots.find((s) => s.version === version) ?? null;
  }

  free(): void {
    this.model.free();
    this.reference?.free();
    this.snapshots = [];
  }
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

interface Batch {
  readonly sequences: (ScoredSequence | GrpoSequence)[];
  readonly skipped: number;
  readonly staleGroups: number;
  readonly logprobSeconds: number;
}

/** The learner: job states, updates and published snapshots. */
export class Learner {
  private readonly jobs = new Map<string, JobState>();
  private readonly loading = new Map<string, Promise<JobState>>();
  private closed = false;

  constructor(private readonly options: LearnerOptions) {}

  /** Job ids whose models are in memory. */
  get jobIds(): string[] {
    return [...this.jobs.keys()];
  }

  /** The state of a loaded job, or null. */
  job(jobId: string): JobState | null {
    return this.jobs.get(jobId) ?? null;
  }

  /**
   * The job's state, creating its model on first use: from the checkpoint the job itself last wrote (a
   * restarted learner resumes), else from the spec's model (preset + seed, or a checkpoint directory).
   */
  ensureJob(jobId: string): Promise<JobState> {
    const have = this.jobs.get(jobId);
    if (have) {
      have.lastUsed = Date.now();
      return Promise.resolve(have);
    }
    let p = this.loading.get(jobId);
    if (!p) {
      p = this.loadJob(jobId).finally(() => this.loading.delete(jobId));
      this.loading.set(jobId, p);
    }
    return p;
  }

  /** True when the job exists in Redis and is active (GetPolicy may load it on demand). */
  async isActive(jobId: string): Promise<boolean> {
    return (await this.options.redis.sismember(jobKeys.active(this.options.prefix), jobId)) === 1;
  }

  private async readSpec(jobId: string): Promise<JobSpec> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidArgumentError(`invalid job id "${jobId}"`);
    const spec = await readJobSpec(this.options.redis, this.options.prefix, jobId);
    if (!spec) throw new NotFoundError(`job ${jobId} not found (no readable spec in its job hash)`);
    return spec;
  }

  private async loadJob(jobId: string): Promise<JobState> {
    if (this.closed) throw new FailedPreconditionError('learner is shutting down');
    const { logger, metrics } = this.options;
    const spec = await this.readSpec(jobId);
    const schedule = scheduleFromSpec(spec);
    const checkpointDir = spec.checkpointDir || join(this.options.dataDir, jobId);
    await this.evictFor(jobId);

    let state: JobState;
    const resume = await latestCheckpoint(checkpointDir, jobId);
    if (resume) {
      const model = await Model.load(resume.dir, { optimizer: true });
      state = new JobState(jobId, spec, model, schedule, checkpointDir);
      state.version = resume.state.policyVersion;
      state.optimizerSteps = resume.state.optimizerSteps;
      state.rlOptimizerSteps = resume.state.rlOptimizerSteps;
      state.reference = await loadReference(resume.dir, model);
      logger.info(
        { job: jobId, dir: resume.dir, version: state.version },
        'job model resumed from its checkpoint',
      );
    } else {
      const source = spec.model || 'tiny';
      let model: Model;
      if (presetNames().includes(source)) {
        if (!Number.isSafeInteger(spec.seed) || spec.seed < 0)
          throw new InvalidArgumentError(`job ${jobId}: seed must be an integer in [0, 2^53)`);
        model = await Model.create(source as 'tiny', spec.seed);
      } else {
        try {
          await access(join(source, CHECKPOINT_FILES.config));
        } catch {
          throw new InvalidArgumentError(
            `job ${jobId}: model "${source}" is neither a preset (${presetNames().join(', ')}) nor a checkpoint directory`,
          );
        }
        model = await Model.load(source);
      }
      state = new JobState(jobId, spec, model, schedule, checkpointDir);
      logger.info({ job: jobId, model: source, params: model.numParams }, 'job model created');
    }
    if (this.closed) {
      state.free();
      throw new FailedPreconditionError('learner is shutting down');
    }
    // published before it is visible in `jobs`: snapshotFor never sees a job without its first snapshot
    // (until then it waits on `loading`)
    try {
      await this.publish(state);
    } catch (err) {
      state.free();
      throw err;
    }
    this.jobs.set(jobId, state);
    metrics.modelsLoaded.set(this.jobs.size);
    return state;
  }

  /** Frees the least recently used job models that are not active, to stay under maxModels. */
  private async evictFor(jobId: string): Promise<void> {
    if (this.jobs.size < this.options.maxModels) return;
    const active = new Set(await this.options.redis.smembers(jobKeys.active(this.options.prefix)));
    const candidates = [...this.jobs.values()]
      .filter((s) => s.jobId !== jobId && !active.has(s.jobId))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.jobs.size >= this.options.maxModels && candidates.length) {
      const victim = candidates.shift() as JobState;
      await victim.tail.catch(() => undefined);
      this.jobs.delete(victim.jobId);
      victim.free();
      this.options.logger.info({ job: victim.jobId }, 'evicted inactive job model');
    }
    this.options.metrics.modelsLoaded.set(this.jobs.size);
  }

  /** Drops a job's model (e.g. after it ended). */
  async dropJob(jobId: string): Promise<void> {
    const s = this.jobs.get(jobId);
    if (!s) return;
    await s.tail.catch(() => undefined);
    this.jobs.delete(jobId);
    s.free();
    this.options.metrics.modelsLoaded.set(this.jobs.size);
  }

  /** Snapshots the current weights as `state.version` and advertises it in the job's policy hash. */
  private async publish(state: JobState): Promise<PolicySnapshot> {
    const params = await state.model.getParams();
    const bytes = float32ToLE(params);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const snap: PolicySnapshot = Object.freeze({
      jobId: state.jobId,
      version: state.version,
      bytes,
      sha256,
      configJson: state.configJson,
    });
    // Older snapshots are dropped from the list; a stream already sending one keeps its own reference.
    state.snapshots = [...state.snapshots.filter((s) => s.version !== snap.version), snap].slice(
      -this.options.keepVersions,
    );
    await this.options.redis.hset(jobKeys.policy(this.options.prefix, state.jobId), {
      version: String(state.version),
      learnerAddress: this.options.advertisedAddress(),
      bytes: String(bytes.length),
      sha256,
    });
    this.options.metrics.policyVersion.set(state.version);
    return snap;
  }

  /** The snapshot GetPolicy streams; NotFound for an unknown job, FailedPrecondition for a version not held. */
  async snapshotFor(jobId: string, version: number): Promise<PolicySnapshot> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidArgumentError(`invalid job id "${jobId}"`);
    let state = this.jobs.get(jobId);
    if (!state) {
      const pending = this.loading.get(jobId);
      if (pending) state = await pending;
      else if (await this.isActive(jobId)) state = await this.ensureJob(jobId);
      else throw new NotFoundError(`job ${jobId} is not served by this learner`);
    }
    const snap = state.snapshot(version);
    if (!snap) {
      const held = state.snapshots.map((s) => s.version).join(', ');
      throw new FailedPreconditionError(
        `job ${jobId}: policy version ${version} is not held by this learner (holds ${held || 'none'})`,
      );
    }
    return snap;
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
    const state = await this.ensureJob(task.jobId);
    const run = state.tail.then(() => this.learnLocked(state, task, learnedKey));
    state.tail = run.catch(() => undefined);
    return run;
  }

  private async learnLocked(state: JobState, task: LearnTask, learnedKey: string): Promise<LearnResult> {
    const { redis, metrics, logger } = this.options;
    const again = await redis.get(learnedKey);
    if (again !== null) {
      metrics.replayedUpdates.inc();
      return parseLearnResult(parseJson(again, learnedKey));
    }
    const taskId = taskIdOf(task);
    if (state.last?.taskId === taskId && task.policyVersion === state.version - 1) {
      // trained before, but the result never reached Redis: store and return it, train nothing
      await redis.set(learnedKey, JSON.stringify(state.last.result), 'NX');
      metrics.replayedUpdates.inc();
      return state.last.result;
    }
    if (task.policyVersion !== state.version) {
      throw new PolicyVersionMismatchError(
        `job ${task.jobId} task ${taskId} was sampled with policy version ${task.policyVersion}, the learner is at ${state.version}`,
      );
    }
    if (task.phase === 'checkpoint') return this.checkpointOnly(state, task, learnedKey);
    const started = performance.now();
    const before = state.snapshot(state.version);
    const optimizerBefore = await state.model.getOptimizerState();
    const countersBefore = { opt: state.optimizerSteps, rl: state.rlOptimizerSteps };
    const rlStarts = task.phase !== 'warmup' && !state.reference;
    const rollback = async () => {
      if (rlStarts && state.reference) {
        // the failed update was the first RL one: undo its reference and optimizer reset too
        state.reference.free();
        state.reference = null;
      }
      // back to the published weights and optimizer state of before, so a retry trains from the same point
      if (before)
        await state.model.setParams(
          new Float32Array(before.bytes.buffer, before.bytes.byteOffset, before.bytes.length / 4).slice(),
        );
      await state.model.setOptimizerState(optimizerBefore);
      state.optimizerSteps = countersBefore.opt;
      state.rlOptimizerSteps = countersBefore.rl;
    };
    let batch: Batch;
    let stats: Awaited<ReturnType<Learner['train']>>;
    const trainStart = performance.now();
    try {
      batch = task.phase === 'warmup' ? this.sftBatch(state, task) : await this.grpoBatch(state, task);
      stats = await this.train(state, task, batch.sequences);
    } catch (err) {
      await rollback();
      throw err;
    }
    const trainSeconds = (performance.now() - trainStart) / 1000 - (batch.logprobSeconds ?? 0);

    const publishStart = performance.now();
    let checkpointPath: string | undefined;
    state.version += 1;
    try {
      await this.publish(state);
      if (this.checkpointDue(state, task)) checkpointPath = await this.checkpoint(state, task);
    } catch (err) {
      // publishing or the checkpoint failed (Redis, disk): undo the whole update, re-advertise the old version
      const failedVersion = state.version;
      state.version -= 1;
      state.snapshots = state.snapshots.filter((x) => x.version !== failedVersion);
      await rollback();
      if (before) await this.publish(state).catch(() => undefined);
      throw err;
    }
    const result: LearnResult = {
      policyVersion: state.version,
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
    state.last = { taskId, result };
    const wrote = await redis.set(learnedKey, JSON.stringify(result), 'NX');
    const stored = wrote === 'OK' ? null : await redis.get(learnedKey);
    const final = stored === null ? result : parseLearnResult(parseJson(stored, learnedKey));

    const phase = task.phase;
    metrics.updates.inc({ phase });
    metrics.optimizerSteps.inc({ phase }, stats.steps);
    metrics.sequences.inc({ phase }, batch.sequences.length);
    metrics.tokens.inc({ phase }, stats.tokens);
    metrics.staleGroups.inc(batch.staleGroups);
    metrics.skippedSequences.inc(batch.skipped);
    metrics.updateSeconds.observe({ phase }, (performance.now() - started) / 1000);
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
        version: state.version,
        sequences: result.sequences,
        loss: result.loss,
        staleGroups: result.staleGroups,
        seconds: result.seconds,
      },
      'update done',
    );
    return final;
  }

  /** A `checkpoint` task: writes the current weights as `step-<n>` without training; the version stays. */
  private async checkpointOnly(state: JobState, task: LearnTask, learnedKey: string): Promise<LearnResult> {
    const t0 = performance.now();
    const checkpointPath = await this.checkpoint(state, task);
    const result: LearnResult = {
      policyVersion: state.version,
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
  private sftBatch(state: JobState, task: LearnTask): Batch {
    const maxLen = state.model.config.maxPositionEmbeddings;
    const sequences: ScoredSequence[] = [];
    let skipped = 0;
    for (const ex of task.sft) {
      const prompt = renderPromptTokens(charTokenizer, ex.prompt);
      const response = [...charTokenizer.encode(ex.target), charTokenizer.eosId];
      if (prompt.length >= maxLen) {
        skipped++;
        continue;
      }
      const tokens = [...prompt, ...response].slice(0, maxLen);
      sequences.push({ tokens: Uint32Array.from(tokens), promptLen: prompt.length });
    }
    return { sequences, skipped, staleGroups: 0, logprobSeconds: 0 };
  }

  /** GRPO: the verified groups with their advantages, old and reference log-probs. */
  private async grpoBatch(state: JobState, task: LearnTask): Promise<Batch> {
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
    const vocab = state.model.config.vocabSize;
    const maxLen = state.model.config.maxPositionEmbeddings;
    let staleGroups = 0;
    let skipped = 0;
    let total = 0;
    const seqs: { tokens: Uint32Array; promptLen: number; advantage: number }[] = [];
    for (const text of raw) {
      const group = parseVerifiedGroup(parseJson(text ?? '', `verified group of ${taskIdOf(task)}`));
      if (group.policyVersion !== state.version) {
        staleGroups++;
        continue;
      }
      const adv = groupAdvantages(group.responses.map((r) => r.reward));
      const prompt = group.promptTokens;
      group.responses.forEach((r, i) => {
        if (++total > this.options.maxSequencesPerTask) {
          throw new InvalidArgumentError(
            `task ${taskIdOf(task)} holds more than ${this.options.maxSequencesPerTask} sequences`,
          );
        }
        const tokens = [...prompt, ...r.tokens];
        const ok =
          prompt.length >= 1 &&
          r.tokens.length >= 1 &&
          tokens.length <= maxLen &&
          tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocab);
        if (!ok) {
          skipped++;
          return;
        }
        seqs.push({ tokens: Uint32Array.from(tokens), promptLen: prompt.length, advantage: adv[i] ?? 0 });
      });
    }
    if (!seqs.length) return { sequences: [], skipped, staleGroups, logprobSeconds: 0 };
    if (!state.reference) {
      // RL starts: freeze the reference (the weights after warm-up) and start AdamW afresh, as RL from a
      // separately trained model would: moments built on the warm-up's large SFT gradients would shrink
      // every RL step (measured: held-out answers flat over 24 SPARK steps with them, +20 points without)
      state.reference = await state.model.cloneFrozen();
      const n = state.model.numParams;
      await state.model.setOptimizerState({ m: new Float32Array(n), v: new Float32Array(n), step: 0 });
    }
    const t0 = performance.now();
    const base = seqs.map((s) => ({ tokens: s.tokens, promptLen: s.promptLen }));
    const old = await state.model.logprobs(base);
    const klCoef = task.hyper.klCoefficient;
    const ref = klCoef > 0 ? await state.reference.logprobs(base) : null;
    const logprobSeconds = (performance.now() - t0) / 1000;
    metrics.logprobSeconds.observe(logprobSeconds);
    const sequences: GrpoSequence[] = seqs.map((s, i) => ({
      tokens: s.tokens,
      promptLen: s.promptLen,
      advantage: s.advantage,
      oldLogprobs: old[i] as Float32Array,
      refLogprobs: ref ? (ref[i] as Float32Array) : null,
    }));
    return { sequences, skipped, staleGroups, logprobSeconds };
  }

  /** ONE pass over the shuffled sequences: one AdamW step per minibatch, micro-batches accumulated. */
  private async train(
    state: JobState,
    task: LearnTask,
    sequences: readonly (ScoredSequence | GrpoSequence)[],
  ): Promise<{
    steps: number;
    tokens: number;
    loss: number;
    kl: number;
    clipFraction: number;
    gradNorm: number;
    learningRate: number;
  }> {
    const h = task.hyper;
    const rl = task.phase !== 'warmup';
    const order = shuffled(sequences, mixSeed(state.spec.seed, task.step, task.phase, 'shuffle'));
    const minibatches = chunks(order, h.miniBatchSize);
    let tokens = 0;
    let lossSum = 0;
    let klSum = 0;
    let clipSum = 0;
    let gradSum = 0;
    let lr = rl ? this.rlLearningRate(state, task) : h.learningRate;
    for (const mb of minibatches) {
      if (rl) lr = this.rlLearningRate(state, task);
      const adamw: AdamWParams = {
        ...DEFAULT_ADAMW,
        lr,
        beta1: h.beta1,
        beta2: h.beta2,
        weightDecay: h.weightDecay,
        maxGradNorm: h.maxGradNorm,
      };
      const micro = chunks(mb, h.microBatchSize);
      const stats: TrainStats = rl
        ? await state.model.trainStep(
            micro,
            { kind: 'grpo', clipEps: h.clipEpsilon, klCoef: h.klCoefficient },
            adamw,
          )
        : await state.model.trainStep(micro, { kind: 'sft' }, adamw);
      state.optimizerSteps += 1;
      if (rl) state.rlOptimizerSteps += 1;
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

  private rlLearningRate(state: JobState, task: LearnTask): number {
    return learningRateAt(
      state.schedule,
      task.hyper.learningRate,
      state.rlOptimizerSteps,
      task.totalOptimizerSteps ?? null,
    );
  }

  /**
   * Every checkpointInterval RL steps (step % interval = 0, step > 0), and after a `final` task: the job's
   * last RL update, or its last warm-up step (the `warmup` checkpoint: the base model RL starts from).
   */
  private checkpointDue(state: JobState, task: LearnTask): boolean {
    if (task.final) return true;
    const every = state.spec.checkpointInterval;
    return task.phase !== 'warmup' && every > 0 && task.step > 0 && task.step % every === 0;
  }

  /** Writes `<checkpointDir>/step-<n>/` now (weights, config, optimizer, reference, trainer_state.json). */
  async checkpoint(
    state: JobState,
    task: { step: number; phase: string; totalOptimizerSteps?: number },
  ): Promise<string> {
    const t0 = performance.now();
    const trainer: TrainerState = {
      jobId: state.jobId,
      step: task.step,
      phase: task.phase,
      policyVersion: state.version,
      optimizerSteps: state.optimizerSteps,
      rlOptimizerSteps: state.rlOptimizerSteps,
      totalOptimizerSteps: task.totalOptimizerSteps ?? null,
      schedule: state.schedule,
      learningRate: null,
      savedAt: new Date().toISOString(),
    };
    const dir = await writeCheckpoint(
      state.checkpointDir,
      state.model,
      state.reference,
      trainer,
      task.phase === 'warmup' ? WARMUP_CHECKPOINT : stepDirName(task.step),
    );
    this.options.metrics.checkpoints.inc();
    this.options.metrics.checkpointSeconds.observe((performance.now() - t0) / 1000);
    this.options.logger.info({ job: state.jobId, step: task.step, dir }, 'checkpoint written');
    return dir;
  }

  /** Frees every model (after the workers stopped). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.loading.values()]);
    for (const s of this.jobs.values()) {
      await s.tail.catch(() => undefined);
      s.free();
    }
    this.jobs.clear();
    this.options.metrics.modelsLoaded.set(0);
  }
}
