// @spark/learner: the native trainer service, on the service skeleton (@spark/runtime/service). It follows
// the active-job set with one BullMQ worker per job on `learn-<job>` (./learn-worker.ts), runs each
// LearnTask's SFT or GRPO update exactly once in effect (./learner.ts), serves the resulting policy weights
// over PolicyService.GetPolicy (./policy-service.ts), and writes checkpoints (./checkpoint.ts).
// `startLearner` is used by main.ts and by in-process tests.
//
// Samplers fetch weights with `fetchPolicy` from @spark/contract (the client lives with the
// contract, so rollout does not depend on this package).
import { hostname } from 'node:os';
import { resolve } from 'node:path';

import { activePollMsKey, baseServiceShape, type ConfigOf, taskLockMsKey, z } from '@spark/runtime/config';
import { startWorkerService, type ServiceDeps, type WorkerService } from '@spark/runtime/service';
import { objectStoreShape, s3StoreFrom } from '@spark/runtime/storage';
import { DEVICE_PATTERN, parseDevice } from '@spark/kernels';

import type { ConnectCollective } from './group.js';

import { FollowerRank } from './follower.js';
import { learnWorkers } from './learn-worker.js';
import { Learner } from './learner.js';
import { createLearnerMetrics, type LearnerMetrics } from './metrics.js';
import { policyServiceImpl, PolicyServiceFast } from './policy-service.js';
import { resolveRank } from './ranks.js';

export {
  Learner,
  JobModel,
  PolicyVersionMismatchError,
  validateLearnTask,
  type PolicySnapshot,
} from './learner.js';
export { learningRateAt, scheduleFromSpec, DEFAULT_SCHEDULE, type LrSchedule } from '@spark/method/schedule';
export { groupAdvantages, shuffled, mixSeed, chunks } from './grpo.js';
export {
  latestCheckpoint,
  readTrainerState,
  writeCheckpoint,
  LATEST_FILE,
  REFERENCE_FILE,
  TRAINER_STATE_FILE,
  type TrainerState,
} from './checkpoint.js';
export { createLearnerMetrics, type LearnerMetrics } from './metrics.js';
export { resolveRank, type RankAssignment } from './ranks.js';
export { splitByTokens, responseTokenCount } from './batches.js';
export { groupKey, type ConnectCollective, type GroupConfig } from './group.js';
export { serializePolicyResponse, PolicyServiceFast } from './policy-service.js';

/**
 * Default bytes per GetPolicy chunk message. Measured with bench-weights.ts (128 KiB–4 MiB, interleaved
 * transfers, eight runs; docs/benchmarks.md): 1 MiB and 4 MiB are equally fast (4 MiB / 1 MiB geometric mean
 * 0.99), smaller chunks slower (more messages to frame, wake up for and hash); 1 MiB stays under gRPC's
 * default 4 MiB receive limit, which a 4 MiB chunk plus framing exceeds.
 */
export const DEFAULT_POLICY_CHUNK_BYTES = 1024 * 1024;

/** The learner's config keys (SPARK_* environment variables or the config file). */
export const learnerConfigShape = {
  ...baseServiceShape,
  /** Checkpoints of jobs whose spec names no checkpoint dir go to `<dataDir>/<jobId>/step-<n>/`. */
  dataDir: z.string().min(1).max(4096).default('spark-data'),
  /** Address samplers use to reach PolicyService (default: grpcHost:boundPort, or hostname:port on 0.0.0.0). */
  advertiseAddress: z.string().max(1024).default(''),
  /** Bytes per GetPolicy chunk message. */
  policyChunkBytes: z
    .number()
    .int()
    .min(4096)
    .max(16 * 1024 * 1024)
    .default(DEFAULT_POLICY_CHUNK_BYTES),
  /** Policy versions kept per job for GetPolicy (the latest and the previous one). */
  keepVersions: z.number().int().min(1).max(16).default(2),
  /** Job models held in memory at once; inactive ones are evicted beyond this. */
  maxModels: z.number().int().min(1).max(64).default(2),
  /** Most sequences (SFT examples or sampled responses) one LearnTask may carry. */
  maxSequencesPerTask: z.number().int().min(1).max(1_000_000).default(65_536),
  /** BullMQ lock of a running update (renewed while it runs), in milliseconds. */
  workerLockMs: taskLockMsKey(120_000),
  /** How often the active-job set is polled, in milliseconds. */
  activePollMs: activePollMsKey(),
  /** Where job models live: 'cpu' or 'cuda:N' (SPARK_DEVICE; the CUDA backend is built, not yet verified). */
  device: z.string().regex(DEVICE_PATTERN, "must be 'cpu' or 'cuda:N' (N = 0..1023)").default('cpu'),
  /** An S3-API store every checkpoint is also published to (SPARK_STORE_*; no bucket = none). */
  ...objectStoreShape,
  /** Ranks of the learner group training each job together (the world size); 1 = a single learner. */
  learnerRanks: z.number().int().min(1).max(1024).default(1),
  /** This process's rank; -1: the ordinal of a StatefulSet pod's hostname (`<name>-<n>`), or 0 alone. */
  learnerRank: z.number().int().min(-1).max(1023).default(-1),
  /** ZeRO-1: AdamW moments partitioned over the ranks (each rank updates its slice of the parameters). */
  learnerZero: z.boolean().default(false),
  /** Time-out of every collective operation (and of the rendezvous) of the learner group, in ms. */
  collectiveTimeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
  /** How long a task waits for the learner group to (re-)form before its attempt fails, in ms. */
  groupFormTimeoutMs: z.number().int().min(100).max(3_600_000).default(300_000),
  /** Address the collective's transport binds and advertises (default: the hostname). */
  collectiveHost: z.string().max(253).default(''),
};

export type LearnerConfig = ConfigOf<typeof learnerConfigShape>;

export interface LearnerDeps extends ServiceDeps {
  /** How a rank of a learner group connects its Collective (default: `Collective.connect`). */
  connect?: ConnectCollective;
}

/** The started learner (grpcPort, metricsPort, logger, serviceMetrics and close() come with the skeleton). */
export type LearnerService = WorkerService<{
  /** The address written to each job's policy hash. */
  readonly address: string;
  readonly learner: Learner;
  readonly metrics: LearnerMetrics;
}>;

export { whenRedisReady } from '@spark/runtime/service';

/** `host:port` of a bound server as samplers should dial it (the hostname when bound to every interface). */
function dialAddress(grpcHost: string, port: number): string {
  const wildcard = grpcHost === '0.0.0.0' || grpcHost === '::';
  const host = wildcard ? hostname() : grpcHost;
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Starts the learner: Redis, PolicyService, /metrics, then the per-job learn workers. */
export async function startLearner(config: LearnerConfig, deps: LearnerDeps = {}): Promise<LearnerService> {
  const ranks = resolveRank(config);
  return startWorkerService(
    {
      name: 'learner',
      grpc: { reflectionProtos: ['spark/v1/policy.proto'] },
      wire: async (ctx) => {
        const { redis, logger, metrics: serviceMetrics, lifecycle, grpcPort } = ctx;
        const metrics = createLearnerMetrics(serviceMetrics);
        const address = () => config.advertiseAddress || dialAddress(config.grpcHost, grpcPort());
        const checkpointStore = s3StoreFrom(config);
        if (checkpointStore) lifecycle.add('checkpoint-store', async () => checkpointStore.close());
        const learner = new Learner({
          checkpointStore,
          redis,
          prefix: config.redisPrefix,
          logger,
          metrics,
          dataDir: resolve(config.dataDir),
          advertisedAddress: address,
          keepVersions: config.keepVersions,
          maxModels: config.maxModels,
          maxSequencesPerTask: config.maxSequencesPerTask,
          device: parseDevice(config.device),
          group:
            ranks.worldSize > 1
              ? {
                  config: {
                    rank: ranks.rank,
                    worldSize: ranks.worldSize,
                    zero: config.learnerZero,
                    timeoutMs: config.collectiveTimeoutMs,
                    formTimeoutMs: config.groupFormTimeoutMs,
                    host: config.collectiveHost,
                    redisUrl: ctx.redisUrl,
                  },
                  ...(deps.connect ? { connect: deps.connect } : {}),
                }
              : null,
        });
        lifecycle.add('learner', () => learner.close());
        if (ranks.worldSize > 1)
          logger.info(
            { rank: ranks.rank, worldSize: ranks.worldSize, source: ranks.source },
            'learner group rank',
          );
        if (learner.isFollower) {
          // a follower: no queue, no PolicyService, no checkpoints; it trains what the leader broadcasts
          const follower = new FollowerRank({
            learner,
            redis,
            prefix: config.redisPrefix,
            logger,
            pollMs: config.activePollMs,
          });
          return {
            grpcServices: [],
            processors: [['follower', follower]],
            ready: () => ({ rank: ranks.rank, worldSize: ranks.worldSize }),
            extra: () => ({
              get address() {
                return address();
              },
              learner,
              metrics,
            }),
          };
        }
        learner.startHeartbeat();
        const workers = learnWorkers(ctx, {
          learner,
          pollMs: config.activePollMs,
          lockMs: config.workerLockMs,
          maxSequencesPerTask: config.maxSequencesPerTask,
        });
        return {
          grpcServices: [
            {
              definition: PolicyServiceFast,
              implementation: policyServiceImpl(learner, {
                logger,
                metrics,
                chunkBytes: config.policyChunkBytes,
              }),
              name: 'spark.v1.PolicyService',
              // the weight stream is internal: only services (the rollout workers) may read it
              access: { '/spark.v1.PolicyService/': ['service'] },
            },
          ],
          processors: [['workers', workers]],
          ready: () => ({
            address: address(),
            ...(ranks.worldSize > 1 ? { rank: ranks.rank, worldSize: ranks.worldSize } : {}),
          }),
          extra: () => ({
            get address() {
              return address();
            },
            learner,
            metrics,
          }),
        };
      },
    },
    config,
    deps,
  );
}
