// @spark/learner: the native trainer service. It follows the active-job set with one BullMQ worker per
// job on `learn-<job>` (concurrency 1), runs each LearnTask's SFT or GRPO update exactly once in effect
// (./learner.ts), serves the resulting policy weights over PolicyService.GetPolicy (./policy-service.ts),
// and writes checkpoints (./checkpoint.ts). `startLearner` is used by main.ts and by in-process tests.
//
// Samplers fetch weights with `fetchPolicy` from @spark/contract (the client lives with the
// contract, so rollout does not depend on this package).
import { hostname } from 'node:os';
import { resolve } from 'node:path';

import { InvalidArgumentError, UnavailableError } from '@spark/runtime';
import { JobQueueWorkers, type LearnResult, type LearnTask } from '@spark/contract';
import { assertServerSecurity, baseServiceShape, z } from '@spark/runtime/config';
import { GrpcServer } from '@spark/runtime/grpc';
import { createLogger, type Logger } from '@spark/runtime/logging';
import { ServiceMetrics, startMetricsServer } from '@spark/runtime/metrics';
import { connectRedis, resolveRedis, UnrecoverableError, type Redis } from '@spark/runtime/redis';

import { Learner, PolicyVersionMismatchError, validateLearnTask } from './learner.js';
import { createLearnerMetrics, type LearnerMetrics } from './metrics.js';
import { policyServiceImpl, PolicyServiceFast } from './policy-service.js';

export {
  Learner,
  JobState,
  PolicyVersionMismatchError,
  validateLearnTask,
  type PolicySnapshot,
} from './learner.js';
export { learningRateAt, scheduleFromSpec, DEFAULT_SCHEDULE, type LrSchedule } from './schedule.js';
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
export { serializePolicyResponse, PolicyServiceFast } from './policy-service.js';

/**
 * Default bytes per GetPolicy chunk message. Measured with bench-weights.ts (128 KiB–4 MiB, interleaved
 * transfers; docs/benchmarks.md): within 128 KiB–1 MiB, 1 MiB gave the highest median throughput and the
 * least CPU per transfer; smaller chunks cost more per byte (more messages to frame, wake up for and hash).
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
  workerLockMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
  /** How often the active-job set is polled, in milliseconds. */
  activePollMs: z.number().int().min(10).max(60_000).default(250),
};

export type LearnerConfig = Readonly<z.infer<z.ZodObject<typeof learnerConfigShape>>>;

export interface LearnerDeps {
  logger?: Logger;
}

export interface LearnerService {
  readonly grpcPort: number;
  readonly metricsPort: number;
  /** The address written to each job's policy hash. */
  readonly address: string;
  readonly learner: Learner;
  readonly metrics: LearnerMetrics;
  readonly serviceMetrics: ServiceMetrics;
  readonly logger: Logger;
  close(): Promise<void>;
}

/** Resolves once an ioredis client is ready (clients here have no offline queue), bounded in time. */
export async function whenRedisReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new UnavailableError(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** Starts the learner: Redis, PolicyService, /metrics, then the per-job learn workers. */
export async function startLearner(config: LearnerConfig, deps: LearnerDeps = {}): Promise<LearnerService> {
  assertServerSecurity(config);
  const logger = deps.logger ?? createLogger({ service: 'learner', level: config.logLevel });
  const redisHandle = await resolveRedis(config.redisUrl || undefined);
  const redis = connectRedis(redisHandle.url);
  const serviceMetrics = new ServiceMetrics('learner');
  const metrics = createLearnerMetrics(serviceMetrics);
  const closers: (() => Promise<void>)[] = [
    async () => {
      await redis.quit().catch(() => undefined);
      await redisHandle.stop();
    },
  ];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err }, 'learner shutdown step failed');
      }
    }
  };
  try {
    await whenRedisReady(redis);
    let address = config.advertiseAddress;
    const learner = new Learner({
      redis,
      prefix: config.redisPrefix,
      logger,
      metrics,
      dataDir: resolve(config.dataDir),
      advertisedAddress: () => address,
      keepVersions: config.keepVersions,
      maxModels: config.maxModels,
      maxSequencesPerTask: config.maxSequencesPerTask,
    });
    closers.push(() => learner.close());

    const server = new GrpcServer({
      service: 'learner',
      logger,
      authToken: config.localMode ? null : config.authToken || null,
      maxMessageBytes: config.grpcMaxMessageBytes,
      ...(config.tlsCertFile && config.tlsKeyFile
        ? {
            tls: {
              certFile: config.tlsCertFile,
              keyFile: config.tlsKeyFile,
              ...(config.tlsCaFile ? { caFile: config.tlsCaFile } : {}),
            },
          }
        : {}),
      reflectionProtos: ['spark/v1/policy.proto'],
    });
    server.addService(
      PolicyServiceFast,
      policyServiceImpl(learner, { logger, metrics, chunkBytes: config.policyChunkBytes }),
      'spark.v1.PolicyService',
    );
    const grpcPort = await server.listen(config.grpcHost, config.grpcPort);
    closers.push(() => server.shutdown(config.shutdownGraceMs));
    if (!address) {
      const wildcard = config.grpcHost === '0.0.0.0' || config.grpcHost === '::';
      const host = wildcard ? hostname() : config.grpcHost;
      address = `${host.includes(':') ? `[${host}]` : host}:${grpcPort}`;
    }

    const metricsServer = await startMetricsServer(serviceMetrics.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
    });
    closers.push(() => metricsServer.close());

    const workers = new JobQueueWorkers<LearnTask, LearnResult>({
      url: redisHandle.url,
      prefix: config.redisPrefix,
      role: 'learn',
      redis,
      logger,
      pollMs: config.activePollMs,
      workerOptions: { concurrency: 1, lockDuration: config.workerLockMs },
      processorFor: (jobId) => {
        // load the model (and publish version 0) as soon as the job is active, so samplers can fetch it
        learner
          .ensureJob(jobId)
          .catch((err: unknown) => logger.error({ err, job: jobId }, 'cannot load job model'));
        return async (job) => {
          try {
            validateLearnTask(job.data, jobId, config.maxSequencesPerTask);
            return await learner.learn(job.data);
          } catch (err) {
            // retrying cannot fix malformed input or a version the learner is not at
            if (err instanceof InvalidArgumentError || err instanceof PolicyVersionMismatchError) {
              throw new UnrecoverableError(err.message);
            }
            throw err;
          }
        };
      },
    });
    await workers.start();
    closers.push(() => workers.close());

    logger.info({ grpcPort, metricsPort: metricsServer.port, address }, 'learner ready');
    return {
      grpcPort,
      metricsPort: metricsServer.port,
      get address() {
        return address;
      },
      learner,
      metrics,
      serviceMetrics,
      logger,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
