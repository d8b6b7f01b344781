// The update transaction: everything one LearnTask may change on a job — the weights, the AdamW state,
// the optimizer-step counters, the policy version, the snapshots and the RL reference — is saved when it
// begins, so a failed update, publish or checkpoint rolls the job back exactly to where it was and a
// retried task trains from the same point. `commit()` keeps the new state and releases the saved copies.
import type { OptimizerShard, OptimizerState } from '@spark/kernels';

import type { JobModel } from './job-registry.js';

export type TransactionState = 'open' | 'committed' | 'rolled-back';

interface Saved {
  readonly params: Float32Array;
  /** The whole AdamW state, or (a ZeRO-1 rank) this rank's slice of it. */
  readonly optimizer: OptimizerState | OptimizerShard;
  readonly sharded: boolean;
  readonly version: number;
  readonly optimizerSteps: number;
  readonly rlOptimizerSteps: number;
  readonly hadReference: boolean;
}

export class UpdateTransaction {
  private saved: Saved | null;
  private status: TransactionState = 'open';
  private advanced = false;

  private constructor(
    readonly job: JobModel,
    saved: Saved,
  ) {
    this.saved = saved;
  }

  /**
   * Saves the job's state. The weights come from the published snapshot of the current version when the
   * job holds one (the same bytes, no extra copy from the native model), else from the model itself. A rank of
   * a ZeRO-1 learner group (`sharded`) saves its slice of the AdamW state (the whole state until its first
   * sharded step).
   */
  static async begin(job: JobModel, options: { sharded?: boolean } = {}): Promise<UpdateTransaction> {
    const sharded = options.sharded ?? false;
    const snap = job.snapshot(job.version);
    const params = snap
      ? new Float32Array(snap.bytes.buffer, snap.bytes.byteOffset, snap.bytes.length / 4).slice()
      : await job.model.getParams();
    return new UpdateTransaction(job, {
      params,
      optimizer: sharded ? await job.model.getOptimizerShard() : await job.model.getOptimizerState(),
      sharded,
      version: job.version,
      optimizerSteps: job.optimizerSteps,
      rlOptimizerSteps: job.rlOptimizerSteps,
      hadReference: job.reference !== null,
    });
  }

  get state(): TransactionState {
    return this.status;
  }

  /** The version the job had when the transaction began. */
  get fromVersion(): number {
    return this.open().version;
  }

  /** True once advance() moved the job to the next version (it must be re-advertised after a rollback). */
  get versionAdvanced(): boolean {
    return this.advanced;
  }

  /** Moves the job to the next policy version (what publish and the checkpoint then record). */
  advance(): number {
    const saved = this.open();
    this.job.version = saved.version + 1;
    this.advanced = true;
    return this.job.version;
  }

  /** Keeps the new state (weights, optimizer, counters, version) and releases the saved copies. */
  commit(): void {
    this.open();
    this.saved = null;
    this.status = 'committed';
  }

  /**
   * Restores the saved state exactly: weights, optimizer state, counters and version; drops snapshots of
   * versions the update made; frees a reference the update froze (the first RL update).
   */
  async rollback(): Promise<void> {
    const saved = this.open();
    const { job } = this;
    if (!saved.hadReference && job.reference) {
      job.reference.free();
      job.reference = null;
    }
    await job.model.setParams(saved.params);
    if (saved.sharded) await job.model.setOptimizerShard(saved.optimizer as OptimizerShard);
    else await job.model.setOptimizerState(saved.optimizer);
    job.optimizerSteps = saved.optimizerSteps;
    job.rlOptimizerSteps = saved.rlOptimizerSteps;
    job.version = saved.version;
    job.snapshots = job.snapshots.filter((s) => s.version <= saved.version);
    this.saved = null;
    this.status = 'rolled-back';
  }

  private open(): Saved {
    if (!this.saved) throw new Error(`update transaction of job ${this.job.jobId} is already ${this.status}`);
    return this.saved;
  }
}
