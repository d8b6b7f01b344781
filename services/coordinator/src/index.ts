// @spark/coordinator: the researchers' JobService, job state in Redis, and the driver of every job's steps.
// `startCoordinator(config)` runs on the service skeleton (@spark/runtime/service: Redis — a private one in
// local mode —, gRPC with health, reflection and auth, /metrics, ordered shutdown) and wires in the job
// store (store.ts), JobService (service.ts), the Generate dispatcher (generate.ts) and the scheduler
// (scheduler.ts), which recovers the store and starts the job drivers (driver.ts).
import { JobServiceService } from '@spark/protocol';
import { startWorkerService, type ServiceDeps, type WorkerService } from '@spark/runtime/service';
import { s3StoreFrom } from '@spark/runtime/storage';

import type { CoordinatorConfig } from './config.js';
import { GenerateDispatcher } from './generate.js';
import { CoordinatorMetrics } from './metrics.js';
import { JobScheduler } from './scheduler.js';
import { createJobService, JOB_SERVICE_ACCESS } from './service.js';
import { JobStore } from './store.js';
import { WatchConnections } from './watch-connections.js';

export {
  coordinatorConfig,
  coordinatorShape,
  loadCoordinatorConfig,
  type CoordinatorConfig,
} from './config.js';
export { normalizeSpec, SPEC_DEFAULTS, MODEL_PRESETS, newJobId, algorithmName } from './spec.js';
export * from './plan.js';
export { JobStore, isTerminal } from './store.js';
export { JobScheduler } from './scheduler.js';
export { GenerateDispatcher, generateRequestProblems } from './generate.js';
export { parseCursor, evalDue, stepPlan, learnMetrics, type DriverCursor } from './driver.js';

/** The started coordinator (grpcPort, metricsPort, redisUrl — a private server's in local mode without
 * redisUrl — and close() come with the skeleton). */
export type Coordinator = WorkerService<{
  /** Ids of the jobs whose drivers run in this process. */
  runningJobs(): string[];
}>;

export type CoordinatorDeps = ServiceDeps;

export async function startCoordinator(
  config: CoordinatorConfig,
  deps: CoordinatorDeps = {},
): Promise<Coordinator> {
  const metrics = new CoordinatorMetrics();
  return startWorkerService(
    {
      name: 'coordinator',
      grpc: { reflectionProtos: ['spark/v1/job.proto'] },
      privateRedisInLocalModeOnly: true,
      metrics: metrics.service,
      wire: async ({ redis, redisUrl, logger, lifecycle }) => {
        const store = new JobStore(redis, config.redisPrefix, config.eventsMaxLen);
        const datasetStore = s3StoreFrom(config);
        if (datasetStore) lifecycle.add('dataset-store', async () => datasetStore.close());
        const scheduler = new JobScheduler({ store, redis, redisUrl, config, logger, metrics, datasetStore });
        metrics.setSource({ jobsByState: () => store.countByState(), ...scheduler.metricsSource() });
        const generator = new GenerateDispatcher({
          redisUrl,
          prefix: config.redisPrefix,
          maxInFlight: config.generateMaxInFlight,
          queueMaxDepth: config.queueMaxDepth,
          pickupMs: config.generatePickupMs,
          timeoutMs: config.generateTimeoutMs,
        });
        lifecycle.add('generate', () => generator.close());
        const watchers = new WatchConnections(redisUrl);
        const service = createJobService({
          store,
          config,
          logger,
          blockingConnection: () => watchers.open(),
          kick: () => scheduler.kick(),
          stopDriver: (jobId, waitMs) => scheduler.stopDriver(jobId, waitMs),
          closing: () => scheduler.isClosing,
          generate: (req, cancelled) => generator.generate(req, cancelled),
          datasetStore,
        });
        return {
          grpcServices: [
            {
              definition: JobServiceService,
              implementation: service,
              name: 'spark.v1.JobService',
              access: JOB_SERVICE_ACCESS,
            },
          ],
          // shutdown runs in reverse: watch streams end first, then scheduling and the drivers stop
          processors: [
            ['scheduler', scheduler],
            ['watchers', watchers],
          ],
          extra: () => ({ runningJobs: () => scheduler.runningJobs() }),
        };
      },
    },
    config,
    deps,
  );
}
