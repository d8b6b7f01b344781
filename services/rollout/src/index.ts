// @spark/rollout: the rollout service, on the service skeleton (@spark/runtime/service). It wires three
// parts: the sampling worker (rollout-worker.ts) serves the `rollout-<job>` queue of every active job,
// sampling each shard at EXACTLY the task's policy version and handing a VerifyTask to `verify-<job>`;
// the model cache (model-cache.ts) holds one model per job, fetched from the learner's PolicyService,
// and frees the models of inactive jobs; the eval-generate worker (eval-generate.ts) serves the
// cluster-wide `eval-generate` queue (JobService.Generate): greedy outputs of a checkpoint on a shared path.
// Metrics: spark_rollout_samples_total{phase}, _sample_seconds, _tokens_generated_total,
// _weight_fetch_seconds, _weight_fetch_bytes_total, _policy_version, _version_refusals_total{reason},
// _eval_prompts_total, _eval_task_seconds, _eval_checkpoint_loads_total, _eval_errors_total{code}.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { DEFAULT_MAX_POLICY_BYTES } from '@spark/contract';
import type { ConfigOf } from '@spark/runtime/config';
import { activePollMsKey, baseServiceShape, defaultsFor, taskLockMsKey } from '@spark/runtime/config';
import { clientTlsFrom, serviceTokenFrom } from '@spark/runtime/grpc';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import { startWorkerService, type ServiceDeps, type WorkerService } from '@spark/runtime/service';
import { objectStoreShape, s3StoreFrom } from '@spark/runtime/storage';
import { DEVICE_PATTERN, parseDevice } from '@spark/kernels';
import { z } from 'zod';

import { EvalGenerateWorker } from './eval-generate.js';
import { InactiveModelPruner, ModelCache, modelCacheMetrics } from './model-cache.js';
import { RolloutWorker } from './rollout-worker.js';

export * from './eval-generate.js';
export * from './model-cache.js';
export * from './sample.js';
export * from './rollout-worker.js';

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
  lockMs: taskLockMsKey(120_000),
  /** How often the active-job set is polled, in milliseconds. */
  pollMs: activePollMsKey(),
  /** How often models of jobs that left the active set are freed, in milliseconds. */
  pruneMs: z.number().int().min(10).max(3_600_000).default(5_000),
  /** Evaluation checkpoints (JobService.Generate) kept loaded at once; least recently used freed. */
  evalMaxCheckpoints: z.number().int().min(1).max(16).default(2),
  /** An evaluation checkpoint unused for this long is freed, in milliseconds. */
  evalIdleMs: z.number().int().min(1_000).max(86_400_000).default(300_000),
  /** Local copies of checkpoints Generate names as `job:<jobId>` (fetched from the object store). */
  evalCacheDir: z.string().min(1).max(4096).default(join(tmpdir(), 'spark-eval-cache')),
  /**
   * Directories (comma-separated) a Generate checkpoint or tokenizer path must lie below (symlinks
   * resolved); refused otherwise with one message whatever the reason. Empty: any path (local mode).
   */
  evalPathRoots: z.string().max(16_384).default(''),
  /** Where sampling models live: 'cpu' or 'cuda:N' (SPARK_DEVICE; the CUDA backend is built, not yet verified). */
  device: z.string().regex(DEVICE_PATTERN, "must be 'cpu' or 'cuda:N' (N = 0..1023)").default('cpu'),
  /** The S3-API store `job:` checkpoints are read from (SPARK_STORE_*; no bucket = none). */
  ...objectStoreShape,
};

export type RolloutConfig = ConfigOf<typeof rolloutConfigShape>;

/** A config with every default applied (tests and launchers). */
export const rolloutConfig = defaultsFor(rolloutConfigShape);

export type RolloutDeps = ServiceDeps;

/** The started rollout service (metricsPort, lifecycle and close() come with the skeleton). */
export type RolloutService = WorkerService<{
  readonly metrics: ServiceMetrics;
  readonly models: ModelCache;
}>;

/** Starts the rollout service. `close()` lets the running shard finish, then frees the models. */
export async function startRollout(config: RolloutConfig, deps: RolloutDeps = {}): Promise<RolloutService> {
  return startWorkerService(
    {
      name: ROLLOUT_SERVICE_NAME,
      wire: async (ctx) => {
        const models = new ModelCache({
          redis: ctx.redis,
          prefix: config.redisPrefix,
          learnerAddress: config.learnerAddress,
          token: serviceTokenFrom(config, ctx.logger),
          // the weight fetch honours the service's TLS settings (it used to open a plaintext channel)
          ...(clientTlsFrom(config) ? { tls: clientTlsFrom(config) } : {}),
          fetchTimeoutMs: config.fetchTimeoutMs,
          maxPolicyBytes: config.maxPolicyBytes,
          maxJobs: config.maxCachedJobs,
          device: parseDevice(config.device),
          ...modelCacheMetrics(ctx.metrics),
        });
        ctx.lifecycle.add('models', () => models.close());
        const pruner = new InactiveModelPruner(models, ctx, config.pruneMs);
        const sampling = new RolloutWorker(ctx, {
          models,
          maxNewTokens: config.maxNewTokens,
          verifyQueueMaxDepth: config.verifyQueueMaxDepth,
          pollMs: config.pollMs,
          lockMs: config.lockMs,
        });
        const store = s3StoreFrom(config);
        if (store) ctx.lifecycle.add('checkpoint-store', async () => store.close());
        const evalGenerate = new EvalGenerateWorker(ctx, {
          store,
          cacheDir: resolve(config.evalCacheDir),
          pathRoots: config.evalPathRoots
            .split(',')
            .map((r) => r.trim())
            .filter((r) => r !== '')
            .map((r) => resolve(r)),
          maxCheckpoints: config.evalMaxCheckpoints,
          idleMs: config.evalIdleMs,
          pruneMs: config.pruneMs,
          lockMs: config.lockMs,
        });
        return {
          processors: [
            ['pruner', pruner],
            ['workers', sampling],
            ['eval-generate', evalGenerate],
          ],
          extra: () => ({ metrics: ctx.metrics, models }),
        };
      },
    },
    config,
    deps,
  );
}
