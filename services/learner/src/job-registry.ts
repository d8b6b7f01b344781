// The learner's job registry: one JobModel per job (the native policy model, the frozen reference made
// when RL starts, the policy version, the optimizer-step counters of the lr schedule and the immutable
// weight snapshots PolicyService streams), loaded on first use — from the newest checkpoint the job itself
// wrote that verifies against its manifest (a restarted learner resumes; checkpoint.ts), else from the spec's model (preset + seed, or a checkpoint
// directory) — and evicted, least recently used first, when more than maxModels inactive jobs are held.
import { access } from 'node:fs/promises';
import { join } from 'node:path';

import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@spark/runtime';
import {
  CHECKPOINT_FILES,
  JOB_ID_PATTERN,
  jobKeys,
  readJobSpec,
  restoreCheckpoint,
  type LearnerResume,
  type LearnResult,
} from '@spark/contract';
import type { Logger } from '@spark/runtime/logging';
import type { JobSpec } from '@spark/protocol';
import type { Redis } from '@spark/runtime/redis';
import type { ObjectStore } from '@spark/runtime/storage';
import { Model, presetNames, toHfConfig, type Device } from '@spark/kernels';

import { latestCheckpoint, loadReference, removeCheckpointLeftovers } from './checkpoint.js';
import type { LearnerMetrics } from './metrics.js';
import type { PolicySnapshot } from './publisher.js';
import { scheduleFromSpec, type LrSchedule } from '@spark/method/schedule';

/** A LearnTask's identity within its job: `<step>/<phase>`. */
export function taskIdOf(task: { step: number; phase: string }): string {
  return `${task.step}/${task.phase}`;
}

/** The state of one job on this learner (not the protocol's JobState: that is a job's lifecycle state). */
export class JobModel {
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

/** Largest checkpoint file restored from the object store (weights of the largest preset fit easily). */
const MAX_RESTORE_FILE_BYTES = 64 * 1024 ** 3;

export interface JobRegistryOptions {
  redis: Redis;
  prefix: string;
  logger: Logger;
  metrics: LearnerMetrics;
  /** Where a job's checkpoints go when its spec names no checkpoint dir: `<dataDir>/<jobId>`. */
  dataDir: string;
  /** Job models held in memory; the least recently used inactive job is evicted beyond this. */
  maxModels: number;
  /** Where job models are created and loaded: 'cpu' or 'cuda:N' (SPARK_DEVICE). */
  device: Device;
  /** Publishes a freshly loaded job's first snapshot; the job becomes visible only once it succeeded. */
  publish: (job: JobModel) => Promise<unknown>;
  /** The object store checkpoints are published to: a job without a local checkpoint resumes from it. */
  checkpointStore?: ObjectStore | null;
  /**
   * A follower rank of a learner group: jobs are created from their spec only (no checkpoint read, no
   * resume record, nothing published) and brought to the leader's state over the collective.
   */
  follower?: boolean;
}

export class JobRegistry {
  private readonly jobs = new Map<string, JobModel>();
  private readonly loading = new Map<string, Promise<JobModel>>();
  private closed = false;

  constructor(private readonly options: JobRegistryOptions) {}

  /** Job ids whose models are in memory. */
  get jobIds(): string[] {
    return [...this.jobs.keys()];
  }

  /** A loaded job, or null. */
  job(jobId: string): JobModel | null {
    return this.jobs.get(jobId) ?? null;
  }

  /** The job's model, loading it on first use (concurrent callers share one load). */
  ensureJob(jobId: string): Promise<JobModel> {
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

  /** True when the job is in the active set (GetPolicy may load it on demand). */
  async isActive(jobId: string): Promise<boolean> {
    return (await this.options.redis.sismember(jobKeys.active(this.options.prefix), jobId)) === 1;
  }

  /** The job a caller may read snapshots of: loaded, being loaded, or active (then loaded); else NotFound. */
  async served(jobId: string): Promise<JobModel> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidArgumentError(`invalid job id "${jobId}"`);
    const have = this.jobs.get(jobId);
    if (have) return have;
    const pending = this.loading.get(jobId);
    if (pending) return pending;
    if (await this.isActive(jobId)) return this.ensureJob(jobId);
    throw new NotFoundError(`job ${jobId} is not served by this learner`);
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

  /** Frees every model once its running update ended. */
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

  private async readSpec(jobId: string): Promise<JobSpec> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidArgumentError(`invalid job id "${jobId}"`);
    const spec = await readJobSpec(this.options.redis, this.options.prefix, jobId);
    if (!spec) throw new NotFoundError(`job ${jobId} not found (no readable spec in its job hash)`);
    return spec;
  }

  private async loadJob(jobId: string): Promise<JobModel> {
    if (this.closed) throw new FailedPreconditionError('learner is shutting down');
    const { logger, metrics } = this.options;
    const spec = await this.readSpec(jobId);
    const schedule = scheduleFromSpec(spec);
    const checkpointDir = spec.checkpointDir || join(this.options.dataDir, jobId);
    await this.evictFor(jobId);

    let job: JobModel;
    if (this.options.follower) {
      job = new JobModel(jobId, spec, await this.specModel(jobId, spec), schedule, checkpointDir);
      if (this.closed) {
        job.free();
        throw new FailedPreconditionError('learner is shutting down');
      }
      this.jobs.set(jobId, job);
      metrics.modelsLoaded.set(this.jobs.size);
      logger.info({ job: jobId }, 'job model created (follower rank: synchronised from the leader)');
      return job;
    }
    const store = this.options.checkpointStore;
    if (store) {
      const restored = await restoreCheckpoint(store, jobId, checkpointDir, MAX_RESTORE_FILE_BYTES);
      if (restored)
        logger.info({ job: jobId, dir: restored, store: store.url }, 'checkpoint restored from the store');
    }
    const leftovers = await removeCheckpointLeftovers(checkpointDir);
    if (leftovers.length)
      logger.warn({ job: jobId, dir: checkpointDir, leftovers }, 'removed unfinished checkpoint writes');
    const resume = await latestCheckpoint(checkpointDir, jobId, logger);
    if (resume) {
      const model = await Model.load(resume.dir, { optimizer: true, device: this.options.device });
      job = new JobModel(jobId, spec, model, schedule, checkpointDir);
      job.version = resume.state.policyVersion;
      job.optimizerSteps = resume.state.optimizerSteps;
      job.rlOptimizerSteps = resume.state.rlOptimizerSteps;
      job.reference = await loadReference(resume.dir, model);
      // the checkpoint's own update: its task, redelivered because its result never reached Redis (the
      // learner died between writing the checkpoint and storing the result), is answered, not refused
      const done = resume.state.result;
      if (done && done.policyVersion === job.version && resume.state.phase !== 'checkpoint')
        job.last = {
          taskId: taskIdOf(resume.state),
          result: { ...done, checkpointPath: resume.dir },
        };
      logger.info(
        { job: jobId, dir: resume.dir, step: resume.state.step, version: job.version },
        'job model resumed from its checkpoint',
      );
    } else {
      const model = await this.specModel(jobId, spec);
      job = new JobModel(jobId, spec, model, schedule, checkpointDir);
      logger.info({ job: jobId, model: spec.model || 'tiny', params: model.numParams }, 'job model created');
    }
    if (this.closed) {
      job.free();
      throw new FailedPreconditionError('learner is shutting down');
    }
    // where this load starts the job: the coordinator rewinds to it when it expected a later version
    const phases = ['warmup', 'policy', 'reward', 'checkpoint'] as const;
    const resumePhase = phases.find((p) => p === resume?.state.phase) ?? 'checkpoint';
    const record: LearnerResume = resume
      ? {
          version: job.version,
          step: resume.state.step,
          phase: resumePhase,
          dir: resume.dir,
          at: new Date().toISOString(),
        }
      : { version: 0, step: 0, phase: 'start', dir: '', at: new Date().toISOString() };
    try {
      await this.options.redis.set(jobKeys.resumed(this.options.prefix, jobId), JSON.stringify(record));
    } catch (err) {
      job.free();
      throw err;
    }
    // published before it is visible in `jobs`: a reader never sees a job without its first snapshot
    // (until then it waits on `loading`)
    try {
      await this.options.publish(job);
    } catch (err) {
      job.free();
      throw err;
    }
    this.jobs.set(jobId, job);
    metrics.modelsLoaded.set(this.jobs.size);
    return job;
  }

  /** The spec's model: a preset made from the seed, or a checkpoint directory. */
  private async specModel(jobId: string, spec: JobSpec): Promise<Model> {
    const source = spec.model || 'tiny';
    if (presetNames().includes(source)) {
      if (!Number.isSafeInteger(spec.seed) || spec.seed < 0)
        throw new InvalidArgumentError(`job ${jobId}: seed must be an integer in [0, 2^53)`);
      return Model.create(source as 'tiny', spec.seed, { device: this.options.device });
    }
    try {
      await access(join(source, CHECKPOINT_FILES.config));
    } catch {
      throw new InvalidArgumentError(
        `job ${jobId}: model "${source}" is neither a preset (${presetNames().join(', ')}) nor a checkpoint directory`,
      );
    }
    return Model.load(source, { device: this.options.device });
  }

  /** Frees the least recently used job models that are not active, to stay under maxModels. */
  private async evictFor(jobId: string): Promise<void> {
    if (this.jobs.size < this.options.maxModels) return;
    const active = new Set(await this.options.redis.smembers(jobKeys.active(this.options.prefix)));
    const candidates = [...this.jobs.values()]
      .filter((s) => s.jobId !== jobId && !active.has(s.jobId))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.jobs.size >= this.options.maxModels && candidates.length) {
      const victim = candidates.shift() as JobModel;
      await victim.tail.catch(() => undefined);
      this.jobs.delete(victim.jobId);
      victim.free();
      this.options.logger.info({ job: victim.jobId }, 'evicted inactive job model');
    }
    this.options.metrics.modelsLoaded.set(this.jobs.size);
  }
}
