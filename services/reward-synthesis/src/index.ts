// @spark/reward-synthesis: the reward-synthesis service, on the service skeleton (@spark/runtime/service).
// Its synthesis worker (synthesis-worker.ts) serves the `synthesis-<job>` queue of every active job: each
// SynthesisTask recycles one policy phase's verified groups into judge and reflection prompts and feeds
// the job's FIFO buffer, releasing a reward-phase batch of B items when the buffer holds enough (see
// synthesis.ts for the exactly-once rule). Metrics: spark_reward_synthesis_*.
import {
  activePollMsKey,
  baseServiceShape,
  defaultsFor,
  taskLockMsKey,
  type ConfigOf,
} from '@spark/runtime/config';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import { startWorkerService, type ServiceDeps, type WorkerService } from '@spark/runtime/service';
import { z } from 'zod';

import { SynthesisWorker } from './synthesis-worker.js';

export * from './synthesis.js';
export * from './synthesis-worker.js';

/** Waits until a fail-fast client is connected (its commands are refused before that). */
export { whenRedisReady as whenReady } from '@spark/runtime/service';

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
  pollMs: activePollMsKey(),
  /** BullMQ lock of a running synthesis task (renewed while it runs), in ms (docs/operations.md, task locks). */
  lockMs: taskLockMsKey(60_000),
};

export type SynthesisConfig = ConfigOf<typeof synthesisConfigShape>;

/** Parses a config with every default applied (tests and launchers). */
export const synthesisConfig = defaultsFor(synthesisConfigShape);

export type SynthesisDeps = ServiceDeps;

/** The started service (metricsPort, lifecycle and close() come with the skeleton). */
export type RewardSynthesisService = WorkerService<{ readonly metrics: ServiceMetrics }>;

/** Starts the service: Redis, metrics, the per-job workers. `close()` drains in-flight tasks first. */
export async function startRewardSynthesis(
  config: SynthesisConfig,
  deps: SynthesisDeps = {},
): Promise<RewardSynthesisService> {
  return startWorkerService(
    {
      name: SERVICE_NAME,
      wire: async (ctx) => {
        const worker = new SynthesisWorker(ctx, {
          defaults: config,
          pollMs: config.pollMs,
          lockMs: config.lockMs,
        });
        return { processors: [['workers', worker]], extra: () => ({ metrics: ctx.metrics }) };
      },
    },
    config,
    deps,
  );
}
