// The coordinator's configuration: the shared service keys plus the scheduler's and the job driver's
// bounds (concurrent jobs, phase time-outs, shard size, queue depth, event stream length, watchers).
import type { ConfigOf, LoadConfigOptions } from '@spark/runtime/config';
import { baseServiceShape, defaultsFor, loadConfigOrExit, z } from '@spark/runtime/config';
import { objectStoreShape } from '@spark/runtime/storage';

export const coordinatorShape = {
  ...baseServiceShape,
  /** Jobs that run at the same time; the others wait QUEUED in submission order. */
  maxConcurrentJobs: z.number().int().min(1).max(64).default(1),
  /** Longest wait for one phase's work (rollouts + verification, a learner update, a synthesis), in ms. */
  phaseTimeoutMs: z
    .number()
    .int()
    .min(1_000)
    .max(24 * 3_600_000)
    .default(900_000),
  /**
   * Safety-net poll of a waiting driver, in ms. Results are noticed at once through the job queues' BullMQ
   * events; this poll only bounds the delay when an event is missed (e.g. a Redis reconnect).
   */
  pollMs: z.number().int().min(10).max(10_000).default(1_000),
  /** Prompts per rollout task (one batched sampler call). */
  shardSize: z.number().int().min(1).max(4096).default(8),
  /** Largest number of waiting tasks in one job queue before enqueueing fails (RESOURCE_EXHAUSTED). */
  queueMaxDepth: z.number().int().min(1).max(1_000_000).default(10_000),
  /** Approximate length bound of each job's event stream (XADD MAXLEN ~). */
  eventsMaxLen: z.number().int().min(100).max(1_000_000).default(10_000),
  /** Concurrent WatchJob streams; more are refused with RESOURCE_EXHAUSTED. */
  maxWatchers: z.number().int().min(1).max(10_000).default(64),
  /**
   * The checkpoint root: a job's checkpoints go to `<dataDir>/<jobId>` when its spec names no directory, and
   * a spec's `checkpointDir` must lie below it. Specs may read checkpoints (`model`) below it or below
   * `datasetDir`.
   */
  dataDir: z.string().min(1).max(4096).default('./spark-data/jobs'),
  /**
   * The dataset root: a spec's `dataset` file must lie below it or below `dataDir` (symlinks resolved);
   * uploaded datasets are stored under `<datasetDir>/uploads`.
   */
  datasetDir: z.string().min(1).max(4096).default('./spark-data/datasets'),
  /** Largest dataset file UploadDataset accepts, in bytes (RESOURCE_EXHAUSTED beyond). */
  uploadMaxBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 ** 3)
    .default(512 * 1024 ** 2),
  /** Uploads at once; more get RESOURCE_EXHAUSTED. */
  uploadMaxInFlight: z.number().int().min(1).max(64).default(4),
  /** Longest time one upload may take, in ms (then DEADLINE_EXCEEDED). */
  uploadTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(600_000),
  /** How often the scheduler looks for queued jobs to start, in ms. */
  schedulePollMs: z.number().int().min(10).max(60_000).default(500),
  /** Jobs that may wait QUEUED at once; SubmitJob answers RESOURCE_EXHAUSTED beyond. */
  maxQueuedJobs: z.number().int().min(1).max(1_000_000).default(1_000),
  /** How long CancelJob waits for a running job's driver to stop before answering, in ms. */
  cancelWaitMs: z.number().int().min(0).max(60_000).default(10_000),
  /** Generate requests (evaluation through the cluster) waiting at once; more get RESOURCE_EXHAUSTED. */
  generateMaxInFlight: z.number().int().min(1).max(10_000).default(64),
  /** How long a Generate task may wait while no rollout worker takes or finishes any, in ms (then UNAVAILABLE). */
  generatePickupMs: z.number().int().min(100).max(3_600_000).default(30_000),
  /** How long one Generate request may take in all, in ms (then DEADLINE_EXCEEDED). */
  generateTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(300_000),
  /**
   * An S3-API store uploaded datasets are also kept in (`datasets/sha256/<hex>.jsonl`; SPARK_STORE_*; no
   * bucket = none): a coordinator that lost its dataset root fetches them back when a job needs them.
   */
  ...objectStoreShape,
};

export type CoordinatorConfig = ConfigOf<typeof coordinatorShape>;

/** The coordinator's config from defaults, file and SPARK_* environment; exits with status 2 when invalid. */
export function loadCoordinatorConfig(options: LoadConfigOptions = {}): CoordinatorConfig {
  return loadConfigOrExit('coordinator', coordinatorShape, options);
}

/** A full config from partial values (tests and in-process launchers): defaults for everything else. */
export const coordinatorConfig = defaultsFor(coordinatorShape);
