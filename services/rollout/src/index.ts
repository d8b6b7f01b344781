// @spark/rollout: the rollout service. Serves the `rollout-<job>` queue of every active job
// (JobQueueWorkers): each RolloutTask (one shard of prompts) is sampled with the job's policy at EXACTLY
// the task's version — fetched from the learner's PolicyService when the cached model is at another
// version (model-cache.ts); a version the learner does not hold yet fails the task so BullMQ retries it
// with backoff — then one VerifyTask (BullMQ id = shardId) goes to `verify-<job>`.
// It also serves the cluster-wide `eval-generate` queue (JobService.Generate, evaluation through the
// cluster; eval-generate.ts): greedy outputs of a checkpoint read from a shared path.
// Metrics: spark_rollout_samples_total{phase}, _sample_seconds, _tokens_generated_total,
// _weight_fetch_seconds, _weight_fetch_bytes_total, _policy_version, _version_refusals_total{reason},
// _eval_prompts_total, _eval_task_seconds, _eval_checkpoint_loads_total, _eval_errors_total{code}.
import { InvalidArgumentError, UnavailableError } from '@spark/runtime';
import {
  EVAL_GENERATE_QUEUE,
  JobQueueWorkers,
  DEFAULT_MAX_POLICY_BYTES,
  jobKeys,
  queueName,
  type GenerateTaskResult,
  type RolloutTask,
  type VerifyTask,
} from '@spark/contract';
import { baseServiceShape, configWithDefaults } from '@spark/runtime/config';
import { Lifecycle } from '@spark/runtime/lifecycle';
import { createLogger, type Logger } from '@spark/runtime/logging';
import { ServiceMetrics, startMetricsServer } from '@spark/runtime/metrics';
import {
  connectRedis,
  createQueue,
  createWorker,
  enqueueBounded,
  resolveRedis,
  UnrecoverableError,
  type Job,
  type Redis,
} from '@spark/runtime/redis';
import { charTokenizer } from '@spark/method/tokenizers';
import type { Queue } from 'bullmq';
import { z } from 'zod';

import { CheckpointGenerators } from './eval-generate.js';
import { ModelCache } from './model-cache.js';
import { parseRolloutTask, sampleShard } from './sample.js';

export * from './eval-generate.js';
export * from './model-cache.js';
export * from './sample.js';

export const ROLLOUT_SERVICE_NAME = 'rollout';

export const rolloutConfigShape = {
  ...baseServiceShape,
  /** Fixed learner PolicyService address (host:port); empty = the job's policy hash `learnerAddress`. */
  learnerAddress: z.string().max(1024).default(''),
  /** Jobs whose model is kept in memory at once (one version each); least recently used evicted. */
  maxCachedJobs: z.number().int().min(1).max(64).default(2),
  /** Deadline of one weight fetch, in milliseconds. */
  fetchTimeoutMs: z.number().int().min(100).max(3_600_000).default(120_000),
  /** Largest policy accepted, in bytes. */
  maxPolicyBytes: z.number().int().min(1024).max(DEFAULT_MAX_POLICY_BYTES).default(DEFAULT_MAX_POLICY_BYTES),
  /** Cap on generated tokens per response, whatever a task asks. */
  maxNewTokens: z.number().int().min(1).max(1_000_000).default(4_096),
  /** Most VerifyTasks waiting on a job's verify queue before a rollout task fails (and retries). */
  verifyQueueMaxDepth: z.number().int().min(1).max(1_000_000).default(10_000),
  /** BullMQ lock of a running shard (renewed while it runs), in milliseconds. */
  lockMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
  /** How often the active-job set is polled, in milliseconds. */
  pollMs: z.number().int().min(10).max(60_000).default(250),
  /** How often models of jobs that left the active set are freed, in milliseconds. */
  pruneMs: z.number().int().min(10).max(3_600_000).default(5_000),
  /** Evaluation checkpoints (JobService.Generate) kept loaded at once; least recently used freed. */
  evalMaxCheckpoints: z.number().int().min(1).max(16).default(2),
  /** An evaluation checkpoint unused for this long is freed, in milliseconds. */
  evalIdleMs: z.number().int().min(1_000).max(86_400_000).default(300_000),
};

export type RolloutConfig = Readonly<z.infer<z.ZodObject<typeof rolloutConfigShape>>>;

/** A config with every default applied (tests and launchers). */
export function rolloutConfig(overrides: Partial<RolloutConfig> = {}): RolloutConfig {
  return configWithDefaults(rolloutConfigShape, overrides);
}

export interface RolloutDeps {
  logger?: Logger;
}

export interface RolloutService {
  readonly metricsPort: number;
  readonly metrics: ServiceMetrics;
  readonly lifecycle: Lifecycle;
  readonly models: ModelCache;
  close(): Promise<void>;
}

/** What a rollout task returns to BullMQ. */
export interface RolloutTaskResult {
  readonly groups: number;
  readonly responses: number;
  readonly tokens: number;
  readonly policyVersion: number;
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

/** Starts the rollout service. `close()` lets the running shard finish, then frees the models. */
export async function startRollout(config: RolloutConfig, deps: RolloutDeps = {}): Promise<RolloutService> {
  const logger = deps.logger ?? createLogger({ service: ROLLOUT_SERVICE_NAME, level: config.logLevel });
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  const metrics = new ServiceMetrics(ROLLOUT_SERVICE_NAME);
  const samples = metrics.counter({
    name: 'samples_total',
    help: 'Responses sampled, by phase',
    labelNames: ['phase'] as const,
  });
  const sampleSeconds = metrics.histogram({
    name: 'sample_seconds',
    help: 'Time of one shard’s batched native sampling call',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  });
  const tokens = metrics.counter({ name: 'tokens_generated_total', help: 'Response tokens generated' });
  const fetchSeconds = metrics.histogram({
    name: 'weight_fetch_seconds',
    help: 'Time to fetch and verify one policy from the learner',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
  });
  const fetchBytes = metrics.counter({ name: 'weight_fetch_bytes_total', help: 'Policy bytes fetched' });
  const policyVersion = metrics.gauge({
    name: 'policy_version',
    help: 'Policy version of the last sampled shard',
  });
  const refusals = metrics.counter({
    name: 'version_refusals_total',
    help: 'Shards not sampled because their policy version was not available (retried later)',
    labelNames: ['reason'] as const,
  });

  try {
    const redisInfo = await resolveRedis(config.redisUrl || undefined);
    lifecycle.add('redis-server', () => redisInfo.stop());
    const redis = connectRedis(redisInfo.url);
    lifecycle.add('redis', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    await whenReady(redis, 10_000);

    const models = new ModelCache({
      redis,
      prefix: config.redisPrefix,
      learnerAddress: config.learnerAddress,
      token: config.localMode || !config.authToken ? null : config.authToken,
      fetchTimeoutMs: config.fetchTimeoutMs,
      maxPolicyBytes: config.maxPolicyBytes,
      maxJobs: config.maxCachedJobs,
      onFetch: ({ seconds, bytes }) => {
        fetchSeconds.observe(seconds);
        fetchBytes.inc(bytes);
      },
      onRefusal: (reason) => refusals.inc({ reason }),
    });
    lifecycle.add('models', () => models.close());
    // models of jobs that left the active set are freed (memory is bounded by maxCachedJobs anyway)
    const pruner = setInterval(() => {
      redis.smembers(jobKeys.active(config.redisPrefix)).then(
        (active) => {
          const dropped = models.retainOnly(new Set(active));
          if (dropped.length) logger.info({ jobs: dropped }, 'freed the models of inactive jobs');
        },
        (err: unknown) => logger.warn({ err }, 'cannot read the active job set'),
      );
    }, config.pruneMs);
    pruner.unref();
    lifecycle.add('pruner', () => clearInterval(pruner));

    // one producer per job's verify queue, bounded (least recently used closed)
    const verifyQueues = new Map<string, Queue<VerifyTask>>();
    const verifyQueue = async (jobId: string): Promise<Queue<VerifyTask>> => {
      let q = verifyQueues.get(jobId);
      if (q) {
        verifyQueues.delete(jobId);
        verifyQueues.set(jobId, q);
        return q;
      }
      q = createQueue<VerifyTask>(queueName('verify', jobId), {
        url: redisInfo.url,
        prefix: config.redisPrefix,
      });
      verifyQueues.set(jobId, q);
      while (verifyQueues.size > 16) {
        const [oldest, oq] = verifyQueues.entries().next().value as [string, Queue<VerifyTask>];
        verifyQueues.delete(oldest);
        void oq.close();
      }
      await q.waitUntilReady();
      return q;
    };
    lifecycle.add('verify-queues', async () => {
      await Promise.all([...verifyQueues.values()].map((q) => q.close()));
    });

    const processorFor = (jobId: string) => async (job: Job<RolloutTask, RolloutTaskResult>) => {
      let task: RolloutTask;
      try {
        task = parseRolloutTask(job.data);
        if (task.jobId !== jobId)
          throw new InvalidArgumentError(`task of job ${task.jobId} on job ${jobId}'s queue`);
      } catch (err) {
        throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
      }
      const shard = await models.withModel(jobId, task.policyVersion, async (model) => {
        try {
          return await sampleShard(model, charTokenizer, task, { maxNewTokens: config.maxNewTokens });
        } catch (err) {
          // a prompt the model cannot take is poison: retrying cannot help
          if (err instanceof InvalidArgumentError) throw new UnrecoverableError(err.message);
          throw err;
        }
      });
      const verify: VerifyTask = {
        jobId,
        step: task.step,
        phase: task.phase,
        shardId: task.shardId,
        groups: shard.groups,
      };
      await enqueueBounded(await verifyQueue(jobId), 'verify', verify, {
        jobId: task.shardId,
        maxDepth: config.verifyQueueMaxDepth,
      });
      const n = shard.groups.length * task.groupSize;
      samples.inc({ phase: task.phase }, n);
      sampleSeconds.observe(shard.seconds);
      tokens.inc(shard.tokensGenerated);
      policyVersion.set(task.policyVersion);
      logger.debug(
        {
          job: jobId,
          shard: task.shardId,
          version: task.policyVersion,
          responses: n,
          seconds: shard.seconds,
        },
        'shard sampled',
      );
      return {
        groups: shard.groups.length,
        responses: n,
        tokens: shard.tokensGenerated,
        policyVersion: task.policyVersion,
      };
    };

    const workers = new JobQueueWorkers<RolloutTask, RolloutTaskResult>({
      url: redisInfo.url,
      prefix: config.redisPrefix,
      role: 'rollout',
      redis,
      logger,
      processorFor,
      pollMs: config.pollMs,
      workerOptions: { concurrency: 1, lockDuration: config.lockMs },
    });
    await workers.start();
    lifecycle.add('workers', () => workers.close());

    // JobService.Generate: greedy generation with a checkpoint from a shared path (one task at a time)
    const evalPrompts = metrics.counter({ name: 'eval_prompts_total', help: 'Evaluation prompts generated' });
    const evalSeconds = metrics.histogram({
      name: 'eval_task_seconds',
      help: 'Time of one evaluation generation task (checkpoint load included)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    });
    const evalLoads = metrics.counter({
      name: 'eval_checkpoint_loads_total',
      help: 'Evaluation checkpoints loaded from disk',
    });
    const evalErrors = metrics.counter({
      name: 'eval_errors_total',
      help: 'Evaluation generation tasks answered with an error',
      labelNames: ['code'] as const,
    });
    const generators = new CheckpointGenerators({
      maxEntries: config.evalMaxCheckpoints,
      idleMs: config.evalIdleMs,
    });
    const evalWorker = createWorker<unknown, GenerateTaskResult>(
      EVAL_GENERATE_QUEUE,
      async (job: Job<unknown, GenerateTaskResult>) => {
        const result = await generators.run(job.data, (r) => {
          evalPrompts.inc(r.prompts);
          evalSeconds.observe(r.seconds);
          if (r.loaded) evalLoads.inc();
        });
        if ('error' in result) {
          evalErrors.inc({ code: result.error.code });
          logger.info({ task: job.id, error: result.error.message }, 'evaluation generation refused');
        }
        return result;
      },
      { url: redisInfo.url, prefix: config.redisPrefix, concurrency: 1, lockDuration: config.lockMs },
    );
    evalWorker.on('error', (err) => logger.warn({ err }, 'eval-generate worker error'));
    const evalPruner = setInterval(() => {
      const freed = generators.pruneIdle();
      if (freed.length) logger.info({ checkpoints: freed }, 'freed idle evaluation checkpoints');
    }, config.pruneMs);
    evalPruner.unref();
    lifecycle.add('eval-generate', async () => {
      clearInterval(evalPruner);
      await evalWorker.close();
      generators.close();
    });

    const server = await startMetricsServer(metrics.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
      healthy: () => !lifecycle.isShuttingDown,
    });
    lifecycle.add('metrics', () => server.close());
    logger.info({ metricsPort: server.port }, 'rollout service ready');
    return { metricsPort: server.port, metrics, lifecycle, models, close: () => lifecycle.shutdown('close') };
  } catch (err) {
    await lifecycle.shutdown('start failed');
    throw err;
  }
}
