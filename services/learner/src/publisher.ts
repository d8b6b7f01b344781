// Weight publishing: a job's current weights become an immutable PolicySnapshot (float32 LE bytes with
// their sha256) that PolicyService streams, the newest `keepVersions` of them kept per job, and the job's
// policy hash in Redis advertises the version, the learner's address, the size and the checksum.
import { createHash } from 'node:crypto';

import { FailedPreconditionError } from '@spark/runtime';
import { float32ToLE, jobKeys } from '@spark/contract';
import type { Redis } from '@spark/runtime/redis';

import type { JobModel } from './job-registry.js';
import type { LearnerMetrics } from './metrics.js';

/** One published policy version: an immutable float32 LE byte buffer with its checksum. */
export interface PolicySnapshot {
  readonly jobId: string;
  readonly version: number;
  readonly bytes: Buffer;
  readonly sha256: string;
  readonly configJson: string;
}

export interface PublisherOptions {
  redis: Redis;
  prefix: string;
  metrics: LearnerMetrics;
  /** Versions kept per job for GetPolicy (the latest and the one before by default). */
  keepVersions: number;
  /** The PolicyService address samplers should use (written to the job's policy hash). */
  advertisedAddress: () => string;
}

export class PolicyPublisher {
  constructor(private readonly options: PublisherOptions) {}

  /** Snapshots the job's current weights as `job.version` and advertises it in the job's policy hash. */
  async publish(job: JobModel): Promise<PolicySnapshot> {
    const bytes = float32ToLE(await job.model.getParams());
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const snap: PolicySnapshot = Object.freeze({
      jobId: job.jobId,
      version: job.version,
      bytes,
      sha256,
      configJson: job.configJson,
    });
    // Older snapshots are dropped from the list; a stream already sending one keeps its own reference.
    job.snapshots = [...job.snapshots.filter((s) => s.version !== snap.version), snap].slice(
      -this.options.keepVersions,
    );
    await this.options.redis.hset(jobKeys.policy(this.options.prefix, job.jobId), {
      version: String(job.version),
      learnerAddress: this.options.advertisedAddress(),
      bytes: String(bytes.length),
      sha256,
    });
    this.options.metrics.policyVersion.set(job.version);
    return snap;
  }
}

/** The snapshot of `version` the job holds; FailedPrecondition when it holds no such version. */
export function heldSnapshot(job: JobModel, version: number): PolicySnapshot {
  const snap = job.snapshot(version);
  if (!snap) {
    const held = job.snapshots.map((s) => s.version).join(', ');
    throw new FailedPreconditionError(
      `job ${job.jobId}: policy version ${version} is not held by this learner (holds ${held || 'none'})`,
    );
  }
  return snap;
}
