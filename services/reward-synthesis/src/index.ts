// @spark/reward-synthesis: the reward-synthesis service. Serves the `synthesis-<job>` queue of every active
// job (JobQueueWorkers): each SynthesisTask recycles one policy phase's verified groups into judge and
// reflection prompts and feeds the job's FIFO buffer, releasing a reward-phase batch of B items when the
// buffer holds enough (see synthesis.ts for the exactly-once rule). Metrics: spark_reward_synthesis_*.
import { InvalidArgumentError, UnavailableError } from '@spark/runtime';
import { JobQueueWorkers, type SynthesisResult, type SynthesisTask } from '@spark/contract';
import { baseServiceShape, configWithDefaults } from '@spark/runtime/config';
import { Lifecycle } from '@spark/runtime/lifecycle';
import { createLogger, type Logger } from '@spark/runtime/logging';
import { ServiceMetrics, startMetricsServer } from '@spark/runtime/metrics';
import { connectRedis, resolveRedis, UnrecoverableError, type Job, type Redis } from '@spark/runtime/redis';
import { z } from 'zod';

import { parseSynthesisTask, synthesize } from './synthesis.js';

export * from './synthesis.js';

/** Waits until a fail-fast client is connected (its commands are refused before that). */
export async function whenReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new UnavailableError(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

export const SERVICE_NAME = 'reward-synthesis';

export const synthesisConfigShape = {
  ...baseServiceShape,
  /** Bound of each job's FIFO buffer; the oldest items beyond it are dropped (and counted). */
  maxBufferItems: z.number().int().min(1).max(1_000_000).default(4_096),
  /** Template wording when a task does not choose. */
  templateVariant: z.enum(['full', 'short']).default('short'),
  /** Longest wrong response shown in a CoT reflection when a task does not choose, in chars. */
  maxCotChars: z.number().int().min(1).max(1_000_000).default(400),
  /** How often the active-job set is polled, in milliseconds. */
  pollMs: z.number().int().min(10).max(60_000).default(250),
};

export type SynthesisConfig = Readonly<z.infer<z.ZodObject<typeof synthesisConfigShape>>>;

/** Parses a config with every default applied (tests and launchers). */
export function synthesisConfig(overrides: Partial<SynthesisConfig> = {}): SynthesisConfig {
  return configWithDefaults(synthesisConfigShape, overrides);
}

export interface SynthesisDeps {
  logger?: Logger;
}

export interface RewardSynthesisService {
  readonly metricsPort: number;
  readonly metrics: ServiceMetrics;
  readonly lifecycle: Lifecycle;
  close(): Promise<void>;
}

/** Starts the service: Redis, metrics, the per-job workers. `close()` drains in-flight tasks first. */
export async function startRewardSynthesis(
  config: SynthesisConfig,
  deps: SynthesisDeps = {},
): Promise<RewardSynthesisService> {
  const logger = deps.logger ?? createLogger({ service: SERVICE_NAME, level: config.logLevel });
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  const metrics = new ServiceMetrics(SERVICE_NAME);
  const itemsTotal = metrics.counter({
    name: 'items_total',
    help: 'Recycled prompt items pushed to job buffers, by kind',
    labelNames: ['kind'] as const,
  });
  const bufferLength = metrics.gauge({
    name: 'buffer_items',
    help: 'Items in the buffer of the job whose step ran last',
  });
  const batches = metrics.counter({ name: 'batches_released_total', help: 'Reward-phase batches released' });
  const dropped = metrics.counter({
    name: 'items_dropped_total',
    help: 'Oldest buffer items dropped because a buffer was over maxBufferItems',
  });
  const replays = metrics.counter({
    name: 'replays_total',
    help: 'Redelivered steps answered with their stored result',
  });
  const stepSeconds = metrics.histogram({
    name: 'step_seconds',
    help: 'Time to synthesise one step',
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
  });

  try {
    const redisInfo = await resolveRedis(config.redisUrl || undefined);
    lifecycle.add('redis-server', () => redisInfo.stop());
    const redis = connectRedis(redisInfo.url);
    lifecycle.add('redis', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    await whenReady(redis, 10_000);

    const processorFor = (jobId: string) => async (job: Job<SynthesisTask, SynthesisResult>) => {
      let task: SynthesisTask;
      try {
        task = parseSynthesisTask(job.data);
        if (task.jobId !== jobId)
          throw new InvalidArgumentError(`task of job ${task.jobId} on ${jobId}'s queue`);
      } catch (err) {
        throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
      }
      const end = stepSeconds.startTimer();
      let outcome;
      try {
        outcome = await synthesize(redis, config.redisPrefix, task, config);
      } catch (err) {
        if (err instanceof InvalidArgumentError) throw new UnrecoverableError(err.message);
        throw err;
      }
      end();
      const r = outcome.result;
      if (outcome.fresh) {
        for (const item of outcome.items) itemsTotal.inc({ kind: item.kind });
        if (r.released) batches.inc();
        if (r.dropped) dropped.inc(r.dropped);
      } else replays.inc();
      bufferLength.set(r.bufferLength);
      logger.info(
        {
          job: jobId,
          step: task.step,
          judge: r.judgeItems,
          reflection: r.reflectionItems,
          buffer: r.bufferLength,
          released: r.released?.length ?? 0,
          replay: !outcome.fresh,
        },
        'step synthesised',
      );
      return r;
    };

    const workers = new JobQueueWorkers<SynthesisTask, SynthesisResult>({
      url: redisInfo.url,
      prefix: config.redisPrefix,
      role: 'synthesis',
      redis,
      logger,
      processorFor,
      pollMs: config.pollMs,
    });
    await workers.start();
    lifecycle.add('workers', () => workers.close());

    const server = await startMetricsServer(metrics.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
      healthy: () => !lifecycle.isShuttingDown,
    });
    lifecycle.add('metrics', () => server.close());
    logger.info({ metricsPort: server.port }, 'reward-synthesis ready');
    return { metricsPort: server.port, metrics, lifecycle, close: () => lifecycle.shutdown('close') };
  } catch (err) {
    await lifecycle.shutdown('start failed');
    throw err;
  }
}
