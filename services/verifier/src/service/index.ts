// The verifier service: serves the `verify-<job>` queue of every active job (JobQueueWorkers). Each
// VerifyTask (one rollout shard) is scored with the verifier library and every VerifiedGroup is HSET into
// the phase's group hash (field = groupId), so a redelivered shard rewrites the same fields and never
// duplicates. Malformed payloads fail at once (UnrecoverableError); Redis errors retry with backoff. A
// killed worker's shard is redelivered after its lock (`lockMs`) expires, at the next stalled check
// (`stalledIntervalMs`) of any verifier worker.
// Metrics: spark_verifier_responses_verified_total{kind,result}, _verify_seconds, _reward_ratio{kind}.
import { InvalidArgumentError, UnavailableError } from '@spark/runtime';
import { JobQueueWorkers, jobKeys, type KindName, type VerifyTask } from '@spark/contract';
import { baseServiceShape, configWithDefaults } from '@spark/runtime/config';
import { Lifecycle } from '@spark/runtime/lifecycle';
import { createLogger, type Logger } from '@spark/runtime/logging';
import { ServiceMetrics, startMetricsServer } from '@spark/runtime/metrics';
import { connectRedis, resolveRedis, UnrecoverableError, type Job, type Redis } from '@spark/runtime/redis';
import { z } from 'zod';

import { Verifier } from '@spark/verify';
import { parseVerifyTask, scoreTask } from './score.js';

export * from './score.js';

export const VERIFIER_SERVICE_NAME = 'verifier';

export const verifierConfigShape = {
  ...baseServiceShape,
  /** Time budget per response, in milliseconds (the library's symbolic time-out). */
  budgetMs: z.number().int().min(1).max(60_000).default(50),
  /** Symbolic worker threads. */
  symbolicWorkers: z.number().int().min(1).max(16).default(1),
  /** Tasks processed at once per job queue. */
  concurrency: z.number().int().min(1).max(64).default(1),
  /** How often the active-job set is polled, in milliseconds. */
  pollMs: z.number().int().min(10).max(60_000).default(250),
  /**
   * BullMQ lock of a shard being scored (renewed every half lock while it runs), in milliseconds. A
   * killed worker's shard is redelivered once its lock has expired and a stalled check has run.
   */
  lockMs: z.number().int().min(1_000).max(3_600_000).default(15_000),
  /** How often each worker looks for shards whose lock expired (stalled), in milliseconds. */
  stalledIntervalMs: z.number().int().min(1_000).max(3_600_000).default(5_000),
};

export type VerifierServiceConfig = Readonly<z.infer<z.ZodObject<typeof verifierConfigShape>>>;

/** A config with every default applied (tests and launchers). */
export function verifierServiceConfig(overrides: Partial<VerifierServiceConfig> = {}): VerifierServiceConfig {
  return configWithDefaults(verifierConfigShape, overrides);
}

export interface VerifierServiceDeps {
  logger?: Logger;
}

export interface VerifierService {
  readonly metricsPort: number;
  readonly metrics: ServiceMetrics;
  readonly lifecycle: Lifecycle;
  close(): Promise<void>;
}

/** What a verify task returns to BullMQ (small; the groups themselves go to the hash). */
export interface VerifyTaskResult {
  readonly groups: number;
  readonly responses: number;
  readonly correct: number;
}

async function whenReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new UnavailableError(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    redis.once('ready', onReady);
  });
}

/** Starts the verifier service. `close()` lets in-flight tasks finish, then stops the symbolic workers. */
export async function startVerifierService(
  config: VerifierServiceConfig,
  deps: VerifierServiceDeps = {},
): Promise<VerifierService> {
  const logger = deps.logger ?? createLogger({ service: VERIFIER_SERVICE_NAME, level: config.logLevel });
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  const metrics = new ServiceMetrics(VERIFIER_SERVICE_NAME);
  const verified = metrics.counter({
    name: 'responses_verified_total',
    help: 'Responses scored, by prompt kind and result (correct/wrong)',
    labelNames: ['kind', 'result'] as const,
  });
  const seconds = metrics.histogram({
    name: 'verify_seconds',
    help: 'Time to score one response',
    buckets: [0.0001, 0.0005, 0.002, 0.01, 0.05, 0.2, 1],
  });
  const rewardRatio = metrics.gauge({
    name: 'reward_ratio',
    help: 'Mean reward of the last scored shard, by prompt kind',
    labelNames: ['kind'] as const,
  });
  const tasksTotal = metrics.counter({
    name: 'tasks_total',
    help: 'Verify tasks finished, by outcome',
    labelNames: ['outcome'] as const,
  });

  try {
    const verifier = new Verifier({ budgetMs: config.budgetMs, workers: config.symbolicWorkers });
    let verifierClosed = false;
    lifecycle.add('verifier', () => {
      verifierClosed = true;
      return verifier.close();
    });
    const redisInfo = await resolveRedis(config.redisUrl || undefined);
    lifecycle.add('redis-server', () => redisInfo.stop());
    const redis = connectRedis(redisInfo.url);
    lifecycle.add('redis', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    await whenReady(redis, 10_000);
    await verifier.ready();

    const processorFor = (jobId: string) => async (job: Job<VerifyTask, VerifyTaskResult>) => {
      let task: VerifyTask;
      try {
        task = parseVerifyTask(job.data);
        if (task.jobId !== jobId) {
          throw new InvalidArgumentError(`task of job ${task.jobId} on job ${jobId}'s queue`);
        }
      } catch (err) {
        tasksTotal.inc({ outcome: 'poison' });
        throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
      }
      const sums = new Map<KindName, { n: number; r: number }>();
      const groups = await scoreTask(verifier, task, (kind, reward, s) => {
        verified.inc({ kind, result: reward === 1 ? 'correct' : 'wrong' });
        seconds.observe(s);
        const acc = sums.get(kind) ?? { n: 0, r: 0 };
        acc.n++;
        acc.r += reward;
        sums.set(kind, acc);
      });
      // a shard still scoring when shutdown outran its grace period may hold time-outs caused by the
      // closing worker threads: never store those, let BullMQ redeliver the shard instead
      if (verifierClosed)
        throw new UnavailableError('verifier closed while scoring; the shard will be redelivered');
      for (const [kind, { n, r }] of sums) rewardRatio.set({ kind }, r / n);
      if (groups.length) {
        const key = jobKeys.groups(config.redisPrefix, jobId, task.step, task.phase);
        await redis.hset(key, Object.fromEntries(groups.map((g) => [g.groupId, JSON.stringify(g)])));
      }
      tasksTotal.inc({ outcome: 'ok' });
      let responses = 0;
      let correct = 0;
      for (const g of groups)
        for (const r of g.responses) {
          responses++;
          correct += r.reward;
        }
      logger.debug({ job: jobId, shard: task.shardId, responses, correct }, 'shard verified');
      return { groups: groups.length, responses, correct };
    };

    const workers = new JobQueueWorkers<VerifyTask, VerifyTaskResult>({
      url: redisInfo.url,
      prefix: config.redisPrefix,
      role: 'verify',
      redis,
      logger,
      processorFor,
      pollMs: config.pollMs,
      workerOptions: {
        concurrency: config.concurrency,
        lockDuration: config.lockMs,
        stalledInterval: config.stalledIntervalMs,
      },
    });
    await workers.start();
    lifecycle.add('workers', () => workers.close());

    const server = await startMetricsServer(metrics.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
      healthy: () => !lifecycle.isShuttingDown,
    });
    lifecycle.add('metrics', () => server.close());
    logger.info({ metricsPort: server.port }, 'verifier service ready');
    return { metricsPort: server.port, metrics, lifecycle, close: () => lifecycle.shutdown('close') };
  } catch (err) {
    await lifecycle.shutdown('start failed');
    throw err;
  }
}
