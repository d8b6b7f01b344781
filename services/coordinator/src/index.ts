// @spark/coordinator: the researchers' JobService, job state in Redis, and the driver of every job's steps.
// `startCoordinator(config)` connects to Redis (or starts a private one in local mode), serves JobService
// over gRPC (health, reflection, auth unless localMode) and /metrics, recovers the job store (RUNNING jobs
// in the active set resume from their cursor; QUEUED jobs missing from the pending list are re-queued) and
// runs the scheduler: while fewer than maxConcurrentJobs drivers run, the head of the pending list is
// moved to RUNNING (and into the active set workers follow) and its driver starts.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import { UnavailableError } from '@spark/runtime';
import { assertServerSecurity } from '@spark/runtime/config';
import { GrpcServer } from '@spark/runtime/grpc';
import { Lifecycle } from '@spark/runtime/lifecycle';
import { createLogger } from '@spark/runtime/logging';
import { startMetricsServer } from '@spark/runtime/metrics';
import { JobServiceService, JobState, type JobSpec } from '@spark/protocol';
import { connectRedis, redactRedisUrl, resolveRedis, workerOptions } from '@spark/runtime/redis';
import { jobKeys, type QueueRole } from '@spark/contract';
import { Redis as IORedis } from 'ioredis';

import type { CoordinatorConfig } from './config.js';
import { JobDriver } from './driver.js';
import { GenerateDispatcher } from './generate.js';
import { CoordinatorMetrics } from './metrics.js';
import { createJobService } from './service.js';
import { isTerminal, JobStore } from './store.js';

export {
  coordinatorConfig,
  coordinatorShape,
  loadCoordinatorConfig,
  type CoordinatorConfig,
} from './config.js';
export { normalizeSpec, SPEC_DEFAULTS, MODEL_PRESETS, newJobId, algorithmName } from './spec.js';
export * from './plan.js';
export { JobStore, isTerminal } from './store.js';
export { GenerateDispatcher, generateRequestProblems } from './generate.js';
export { parseCursor, evalDue, stepPlan, learnMetrics, type DriverCursor } from './driver.js';

/** Waits until a fail-fast client (no offline queue) is connected; UnavailableError after `ms`. */
async function waitReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new UnavailableError(`Redis did not become ready within ${ms} ms`));
    }, ms);
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

export interface Coordinator {
  readonly grpcPort: number;
  readonly metricsPort: number;
  /** The Redis URL in use (a private server's in local mode without redisUrl). */
  readonly redisUrl: string;
  /** Ids of the jobs whose drivers run in this process. */
  runningJobs(): string[];
  close(): Promise<void>;
}

export interface CoordinatorDeps {
  logger?: Logger;
}

export async function startCoordinator(
  config: CoordinatorConfig,
  deps: CoordinatorDeps = {},
): Promise<Coordinator> {
  assertServerSecurity(config);
  const logger = deps.logger ?? createLogger({ service: 'coordinator', level: config.logLevel });
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  const started: (() => Promise<void>)[] = [];
  try {
    const redisLoc = config.redisUrl
      ? await resolveRedis(config.redisUrl)
      : config.localMode
        ? await resolveRedis(undefined)
        : (() => {
            throw new Error('redisUrl (REDIS_URL) is required outside local mode');
          })();
    lifecycle.add('redis-server', () => redisLoc.stop());
    started.push(() => redisLoc.stop());
    const redis = connectRedis(redisLoc.url);
    await waitReady(redis, 10_000);
    lifecycle.add('redis', () => void redis.disconnect());
    started.push(async () => redis.disconnect());
    logger.info({ redis: redactRedisUrl(redisLoc.url), prefix: config.redisPrefix }, 'connected to Redis');

    const store = new JobStore(redis, config.redisPrefix, config.eventsMaxLen);
    const metrics = new CoordinatorMetrics();
    const drivers = new Map<string, JobDriver>();
    let closing = false;

    const startDriver = (jobId: string, spec: JobSpec): void => {
      const driver = new JobDriver(jobId, spec, {
        store,
        redis,
        redisUrl: redisLoc.url,
        config,
        logger,
        metrics,
      });
      drivers.set(jobId, driver);
      driver.start();
      void driver.done.then(() => {
        drivers.delete(jobId);
        kick();
      });
    };

    // ---- scheduler -------------------------------------------------------------------------
    let scheduling: Promise<void> = Promise.resolve();
    const schedule = async (): Promise<void> => {
      while (!closing && drivers.size < config.maxConcurrentJobs) {
        const head = await store.pendingHead();
        if (head === null) return;
        const status = await store.get(head);
        if (!status || status.state !== JobState.JOB_STATE_QUEUED || !status.spec) {
          await store.removePending(head);
          continue;
        }
        await store.addActive(head);
        const moved = await store.transition(head, JobState.JOB_STATE_RUNNING, [JobState.JOB_STATE_QUEUED], {
          message: 'running',
        });
        await store.removePending(head);
        if (!moved) {
          await store.removeActive(head);
          continue;
        }
        logger.info({ job: head }, 'job started');
        startDriver(head, status.spec);
      }
    };
    const kick = (): void => {
      if (closing) return;
      scheduling = scheduling.then(schedule).catch((err: unknown) => {
        metrics.error('scheduler');
        logger.warn({ err }, 'scheduler pass failed');
      });
    };

    // ---- recovery ------------------------------------------------------------------------------
    for (const id of await store.activeIds()) {
      const status = await store.get(id);
      if (status?.state === JobState.JOB_STATE_RUNNING && status.spec) {
        logger.info({ job: id, step: status.step }, 'resuming running job');
        startDriver(id, status.spec);
      } else if (!status || isTerminal(status.state)) {
        await store.removeActive(id);
      }
    }
    const pending = new Set(await store.pendingIds());
    for (const id of await store.queuedIds()) if (!pending.has(id)) await store.pushPending(id);

    metrics.setSource({
      jobsByState: () => store.countByState(),
      queueDepths: async () => {
        const sum: Record<QueueRole, number> = { rollout: 0, verify: 0, synthesis: 0, learn: 0 };
        for (const d of drivers.values()) {
          const q = await d.queueDepths().catch(() => null);
          if (!q) continue;
          for (const r of Object.keys(sum) as QueueRole[]) sum[r] += q[r];
        }
        return sum;
      },
      policyVersionLag: async () => {
        let lag = 0;
        for (const d of drivers.values()) {
          const published = Number(
            (await redis.hget(jobKeys.policy(config.redisPrefix, d.jobId), 'version').catch(() => null)) ?? 0,
          );
          lag = Math.max(lag, d.version - published);
        }
        return lag;
      },
    });

    // ---- servers ----------------------------------------------------------------------------
    const generator = new GenerateDispatcher({
      redisUrl: redisLoc.url,
      prefix: config.redisPrefix,
      maxInFlight: config.generateMaxInFlight,
      queueMaxDepth: config.queueMaxDepth,
      pickupMs: config.generatePickupMs,
      timeoutMs: config.generateTimeoutMs,
    });
    lifecycle.add('generate', () => generator.close());
    const blockingConns = new Set<Redis>();
    const service = createJobService({
      store,
      config,
      logger,
      blockingConnection: () => {
        const c = new IORedis(workerOptions(redisLoc.url));
        c.on('error', () => undefined);
        blockingConns.add(c);
        c.once('end', () => blockingConns.delete(c));
        return c;
      },
      kick,
      stopDriver: async (jobId, waitMs) => {
        const d = drivers.get(jobId);
        if (!d) return;
        d.stop('cancel');
        await Promise.race([d.done, new Promise((r) => setTimeout(r, waitMs).unref())]);
      },
      closing: () => closing,
      generate: (req, cancelled) => generator.generate(req, cancelled),
    });
    const grpcServer = new GrpcServer({
      service: 'coordinator',
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
      reflectionProtos: ['spark/v1/job.proto'],
    });
    grpcServer.addService(JobServiceService, service, 'spark.v1.JobService');
    const grpcPort = await grpcServer.listen(config.grpcHost, config.grpcPort);
    const metricsServer = await startMetricsServer(metrics.service.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
      healthy: () => !closing,
    });

    // Shutdown order (reverse of registration): stop scheduling and drivers, then servers, then Redis.
    lifecycle.add('metrics', () => metricsServer.close());
    lifecycle.add('grpc', () => grpcServer.shutdown(config.shutdownGraceMs));
    lifecycle.add('drivers', async () => {
      closing = true;
      clearInterval(timer);
      for (const c of blockingConns) c.disconnect();
      await scheduling;
      for (const d of drivers.values()) d.stop('shutdown');
      await Promise.all([...drivers.values()].map((d) => d.done));
    });

    const timer = setInterval(kick, config.schedulePollMs);
    timer.unref();
    kick();
    logger.info({ grpcPort, metricsPort: metricsServer.port }, 'coordinator ready');

    return {
      grpcPort,
      metricsPort: metricsServer.port,
      redisUrl: redisLoc.url,
      runningJobs: () => [...drivers.keys()],
      close: () => lifecycle.shutdown('close'),
    };
  } catch (err) {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
    throw err;
  }
}
