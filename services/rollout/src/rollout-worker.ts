// The sampling worker: serves the `rollout-<job>` queue of every active job (JobQueueWorkers). Each
// RolloutTask (one shard of prompts) is sampled with the job's policy at EXACTLY the task's version (the
// model cache fetches it from the learner when the cached model is at another version; a version the
// learner does not hold yet fails the task so BullMQ retries it with backoff), then one VerifyTask
// (BullMQ id = shardId) goes to `verify-<job>` through a bounded set of producers.
// Metrics: spark_rollout_samples_total{phase}, _sample_seconds, _tokens_generated_total, _policy_version.
import { InvalidArgumentError } from '@spark/runtime';
import {
  JobQueueProcessor,
  queueName,
  taskOnJobQueue,
  type RolloutTask,
  type VerifyTask,
  type WorkerHost,
} from '@spark/contract';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import { createQueue, enqueueBounded, UnrecoverableError, type Job } from '@spark/runtime/redis';
import { charTokenizer } from '@spark/method/tokenizers';
import type { Queue } from 'bullmq';

import type { ModelCache } from './model-cache.js';
import { parseRolloutTask, sampleShard } from './sample.js';

/** What a rollout task returns to BullMQ. */
export interface RolloutTaskResult {
  readonly groups: number;
  readonly responses: number;
  readonly tokens: number;
  readonly policyVersion: number;
}

/** One producer per job's verify queue, at most `max` open (least recently used closed). */
export class VerifyQueues {
  private readonly queues = new Map<string, Queue<VerifyTask>>();

  constructor(private readonly options: { redisUrl: string; prefix: string; max?: number }) {}

  async get(jobId: string): Promise<Queue<VerifyTask>> {
    let q = this.queues.get(jobId);
    if (q) {
      this.queues.delete(jobId);
      this.queues.set(jobId, q);
      return q;
    }
    q = createQueue<VerifyTask>(queueName('verify', jobId), {
      url: this.options.redisUrl,
      prefix: this.options.prefix,
    });
    this.queues.set(jobId, q);
    while (this.queues.size > (this.options.max ?? 16)) {
      const [oldest, oq] = this.queues.entries().next().value as [string, Queue<VerifyTask>];
      this.queues.delete(oldest);
      void oq.close();
    }
    await q.waitUntilReady();
    return q;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}

export interface RolloutWorkerOptions {
  models: ModelCache;
  /** Cap on generated tokens per response. */
  maxNewTokens: number;
  /** Most VerifyTasks waiting on a job's verify queue before a rollout task fails (and retries). */
  verifyQueueMaxDepth: number;
  /** How often the active-job set is polled, in ms. */
  pollMs: number;
  /** BullMQ lock of a running shard, in ms. */
  lockMs: number;
}

function samplingMetrics(metrics: ServiceMetrics) {
  return {
    samples: metrics.counter({
      name: 'samples_total',
      help: 'Responses sampled, by phase',
      labelNames: ['phase'] as const,
    }),
    sampleSeconds: metrics.histogram({
      name: 'sample_seconds',
      help: 'Time of one shard’s batched native sampling call',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    }),
    tokens: metrics.counter({ name: 'tokens_generated_total', help: 'Response tokens generated' }),
    policyVersion: metrics.gauge({
      name: 'policy_version',
      help: 'Policy version of the last sampled shard',
    }),
  };
}

/** The per-job sampling workers and their verify-queue producers. A processor of the service skeleton. */
export class RolloutWorker extends JobQueueProcessor<RolloutTask, RolloutTaskResult> {
  private readonly verifyQueues: VerifyQueues;
  private readonly m: ReturnType<typeof samplingMetrics>;

  constructor(
    host: WorkerHost,
    private readonly options: RolloutWorkerOptions,
  ) {
    super(host, 'rollout', {
      pollMs: options.pollMs,
      workerOptions: { concurrency: 1, lockDuration: options.lockMs },
    });
    this.m = samplingMetrics(host.metrics);
    this.verifyQueues = new VerifyQueues({ redisUrl: host.redisUrl, prefix: host.config.redisPrefix });
  }

  /** Lets the running shard finish, then closes the verify producers. */
  override async close(): Promise<void> {
    await super.close();
    await this.verifyQueues.close();
  }

  protected async process(
    jobId: string,
    job: Job<RolloutTask, RolloutTaskResult>,
  ): Promise<RolloutTaskResult> {
    const { models } = this.options;
    const { logger } = this.host;
    const task = taskOnJobQueue(job.data, jobId, parseRolloutTask);
    const shard = await models.withModel(jobId, task.policyVersion, async (model) => {
      try {
        return await sampleShard(model, charTokenizer, task, { maxNewTokens: this.options.maxNewTokens });
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
    await enqueueBounded(await this.verifyQueues.get(jobId), 'verify', verify, {
      jobId: task.shardId,
      maxDepth: this.options.verifyQueueMaxDepth,
    });
    const n = shard.groups.length * task.groupSize;
    this.m.samples.inc({ phase: task.phase }, n);
    this.m.sampleSeconds.observe(shard.seconds);
    this.m.tokens.inc(shard.tokensGenerated);
    this.m.policyVersion.set(task.policyVersion);
    logger.debug(
      { job: jobId, shard: task.shardId, version: task.policyVersion, responses: n, seconds: shard.seconds },
      'shard sampled',
    );
    return {
      groups: shard.groups.length,
      responses: n,
      tokens: shard.tokensGenerated,
      policyVersion: task.policyVersion,
    };
  }
}
