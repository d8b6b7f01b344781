// The verifier service, on the service skeleton (@spark/runtime/service): the verifier library (symbolic
// worker threads) and the verify worker (verify-worker.ts), which scores the `verify-<job>` queue of
// every active job into the phases' group hashes. A killed worker's shard is redelivered after its lock
// (`lockMs`) expires, at the next stalled check (`stalledIntervalMs`) of any verifier worker.
import type { ConfigOf } from '@spark/runtime/config';
import { activePollMsKey, baseServiceShape, defaultsFor, taskLockMsKey } from '@spark/runtime/config';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import { startWorkerService, type ServiceDeps, type WorkerService } from '@spark/runtime/service';
import { z } from 'zod';

import { Verifier } from '@spark/verify';
import { VerifyWorker } from './verify-worker.js';

export * from './score.js';
export * from './verify-worker.js';

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
  pollMs: activePollMsKey(),
  /**
   * BullMQ lock of a shard being scored (renewed every half lock while it runs), in milliseconds. A
   * killed worker's shard is redelivered once its lock has expired and a stalled check has run.
   */
  lockMs: taskLockMsKey(15_000),
  /** How often each worker looks for shards whose lock expired (stalled), in milliseconds. */
  stalledIntervalMs: z.number().int().min(1_000).max(3_600_000).default(5_000),
};

export type VerifierServiceConfig = ConfigOf<typeof verifierConfigShape>;

/** A config with every default applied (tests and launchers). */
export const verifierServiceConfig = defaultsFor(verifierConfigShape);

export type VerifierServiceDeps = ServiceDeps;

/** The started verifier service (metricsPort, lifecycle and close() come with the skeleton). */
export type VerifierService = WorkerService<{ readonly metrics: ServiceMetrics }>;

/** Starts the verifier service. `close()` lets in-flight tasks finish, then stops the symbolic workers. */
export async function startVerifierService(
  config: VerifierServiceConfig,
  deps: VerifierServiceDeps = {},
): Promise<VerifierService> {
  return startWorkerService(
    {
      name: VERIFIER_SERVICE_NAME,
      wire: async (ctx) => {
        const verifier = new Verifier({ budgetMs: config.budgetMs, workers: config.symbolicWorkers });
        let verifierClosed = false;
        ctx.lifecycle.add('verifier', () => {
          verifierClosed = true;
          return verifier.close();
        });
        await verifier.ready();
        const worker = new VerifyWorker(ctx, {
          verifier,
          verifierClosed: () => verifierClosed,
          concurrency: config.concurrency,
          pollMs: config.pollMs,
          lockMs: config.lockMs,
          stalledIntervalMs: config.stalledIntervalMs,
        });
        return { processors: [['workers', worker]], extra: () => ({ metrics: ctx.metrics }) };
      },
    },
    config,
    deps,
  );
}
