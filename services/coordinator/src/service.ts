// The researchers' JobService over gRPC: SubmitJob (validate, store QUEUED, wake the scheduler), GetJob,
// ListJobs, CancelJob (QUEUED → CANCELLED at once; RUNNING → the driver stops at its next wait, bounded
// wait for it; FAILED_PRECONDITION when already ended) and WatchJob (replay the event stream after
// `afterSeq`, then follow it live with XREAD BLOCK on a dedicated connection until the job ends, the
// client goes away or the server shuts down; concurrent watchers are bounded) and Generate (greedy
// outputs of a checkpoint from a rollout worker, through generate.ts) and UploadDataset (upload.ts).
// Callers are principals (see @spark/runtime/auth): the server lets researchers and operators call
// JobService (JOB_SERVICE_ACCESS); a job records its submitter as its owner, and a researcher may get,
// watch, cancel and list only its own jobs (PERMISSION_DENIED naming the method and job otherwise);
// operators see every job.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import {
  FailedPreconditionError,
  InvalidArgumentError,
  PermissionDeniedError,
  ResourceExhaustedError,
} from '@spark/runtime';
import { JOB_ID_PATTERN, parseStoredCheckpointRef, type StoredCheckpointRef } from '@spark/contract';
import { hasRole, type AccessMap, type Principal } from '@spark/runtime/auth';
import type { grpc } from '@spark/runtime/grpc';
import type { ObjectStore } from '@spark/runtime/storage';
import { clientStreamHandler, principalOf, serverStreamHandler, unaryHandler } from '@spark/runtime/grpc';
import {
  JobEventType,
  JobState,
  type CancelJobRequest,
  type CancelJobResponse,
  type GenerateRequest,
  type GenerateResponse,
  type GetJobRequest,
  type GetJobResponse,
  type JobServiceServer,
  type JobStatus,
  type ListJobsRequest,
  type ListJobsResponse,
  type SubmitJobRequest,
  type SubmitJobResponse,
  type WatchJobRequest,
  type WatchJobResponse,
} from '@spark/protocol';

import type { CoordinatorConfig } from './config.js';
import { newJobId, normalizeSpec, uploadedPath } from './spec.js';
import { isTerminal, type JobStore } from './store.js';
import { createUploader, restoreUploadedDataset } from './upload.js';

/** What the service needs from the coordinator around it. */
export interface JobServiceDeps {
  readonly store: JobStore;
  readonly config: CoordinatorConfig;
  readonly logger: Logger;
  /** A new dedicated Redis connection for one blocking reader (closed by the caller). */
  readonly blockingConnection: () => Redis;
  /** Asks the scheduler to look for work now. */
  readonly kick: () => void;
  /** Stops the job's local driver (when it runs here) and resolves once it has stopped, bounded. */
  readonly stopDriver: (jobId: string, waitMs: number) => Promise<void>;
  /** True once the server is shutting down (watchers end). */
  readonly closing: () => boolean;
  /** Where uploaded datasets are also kept (null: only below the dataset root). */
  readonly datasetStore?: ObjectStore | null;
  /** Serves JobService.Generate (GenerateDispatcher.generate); `cancelled` says the client went away. */
  readonly generate: (req: GenerateRequest, cancelled: () => boolean) => Promise<GenerateResponse>;
}

export const LIST_DEFAULT = 50;
export const LIST_MAX = 500;
const WATCH_BATCH = 200;
const WATCH_BLOCK_MS = 1_000;

/** Who may call JobService: researchers (their own jobs) and operators (every job); Generate too. */
export const JOB_SERVICE_ACCESS: AccessMap = {
  '/spark.v1.JobService/': ['researcher', 'operator'],
};

/** Whether `principal` may act on any job, not only its own. */
function seesEveryJob(principal: Principal): boolean {
  return hasRole(principal, 'operator');
}

/** PermissionDeniedError unless the job is the caller's own or the caller is an operator. */
function checkOwner(principal: Principal, method: string, status: JobStatus): void {
  if (seesEveryJob(principal) || (status.owner !== '' && status.owner === principal.name)) return;
  throw new PermissionDeniedError(
    `permission denied: ${method} of job ${status.jobId}: it is not a job of ${principal.name}`,
  );
}

/**
 * Generate reads a checkpoint: a researcher may name only a checkpoint of its own job (`job:<jobId>…` in
 * the object store); a directory path, which says nothing about whose it is, needs an operator.
 */
async function checkGenerateAccess(store: JobStore, principal: Principal, checkpoint: string): Promise<void> {
  if (seesEveryJob(principal)) return;
  let ref: StoredCheckpointRef | null;
  try {
    ref = parseStoredCheckpointRef(checkpoint);
  } catch {
    return; // malformed: the request check answers INVALID_ARGUMENT with the reason
  }
  if (ref === null) {
    if (checkpoint === '') return;
    throw new PermissionDeniedError(
      `permission denied: Generate of a checkpoint path needs role operator; ${principal.name} may name its own jobs' checkpoints as job:<jobId>[/<dir>]`,
    );
  }
  const status = await store.require(ref.jobId);
  checkOwner(principal, 'Generate', status);
}

function checkJobId(id: string): void {
  if (!JOB_ID_PATTERN.test(id))
    throw new InvalidArgumentError('invalid job id', [`jobId: must match ${String(JOB_ID_PATTERN)}`]);
}

export function createJobService(deps: JobServiceDeps): JobServiceServer {
  const { store, logger, config } = deps;
  let watchers = 0;
  // Admissions (the queue-length check and the store) run one at a time: checked concurrently, 20 callers
  // could all see 199 queued jobs and all be admitted (seen under load: 220 queued with a bound of 200).
  let admission: Promise<unknown> = Promise.resolve();

  const submitJob = async (
    req: SubmitJobRequest,
    call: grpc.ServerUnaryCall<SubmitJobRequest, SubmitJobResponse>,
  ): Promise<SubmitJobResponse> => {
    const owner = principalOf(call).name;
    const name = req.spec?.name.trim() ?? '';
    const jobId = newJobId(name.slice(0, 128));
    const uploaded = /^sha256:([0-9a-f]{64})$/.exec(req.spec?.dataset.trim() ?? '');
    if (uploaded) {
      const path = uploadedPath(config.datasetDir, uploaded[1] as string);
      await restoreUploadedDataset(deps.datasetStore ?? null, config.datasetDir, path, config.uploadMaxBytes);
    }
    const spec = normalizeSpec(req.spec, {
      dataDir: config.dataDir,
      datasetDir: config.datasetDir,
      jobId,
    });
    const admit = admission.then(async () => {
      if ((await store.pendingCount()) >= config.maxQueuedJobs) {
        throw new ResourceExhaustedError(`${config.maxQueuedJobs} jobs are already queued; try again later`);
      }
      return store.create(jobId, spec, owner);
    });
    admission = admit.catch(() => undefined);
    const status = await admit;
    logger.info({ job: jobId, name: spec.name, owner }, 'job submitted');
    deps.kick();
    return { jobId, status };
  };

  const getJob = async (
    req: GetJobRequest,
    call: grpc.ServerUnaryCall<GetJobRequest, GetJobResponse>,
  ): Promise<GetJobResponse> => {
    checkJobId(req.jobId);
    const status = await store.require(req.jobId);
    checkOwner(principalOf(call), 'GetJob', status);
    return { status };
  };

  const listJobs = async (
    req: ListJobsRequest,
    call: grpc.ServerUnaryCall<ListJobsRequest, ListJobsResponse>,
  ): Promise<ListJobsResponse> => {
    const limit = req.limit === 0 ? LIST_DEFAULT : req.limit;
    if (limit > LIST_MAX)
      throw new InvalidArgumentError('invalid list request', [`limit: at most ${LIST_MAX}`]);
    const principal = principalOf(call);
    return { jobs: await store.list(limit, seesEveryJob(principal) ? undefined : principal.name) };
  };

  const cancelJob = async (
    req: CancelJobRequest,
    call: grpc.ServerUnaryCall<CancelJobRequest, CancelJobResponse>,
  ): Promise<CancelJobResponse> => {
    checkJobId(req.jobId);
    const before = await store.require(req.jobId);
    checkOwner(principalOf(call), 'CancelJob', before);
    if (isTerminal(before.state)) {
      throw new FailedPreconditionError(`job ${req.jobId} already ended (${JobState[before.state]})`);
    }
    await store.requestCancel(req.jobId);
    // A queued job is cancelled here; a running one by its driver (which cleans its queues up).
    const wasQueued = await store.transition(
      req.jobId,
      JobState.JOB_STATE_CANCELLED,
      [JobState.JOB_STATE_QUEUED],
      {
        message: 'cancelled before it started',
      },
    );
    if (wasQueued) {
      await store.removePending(req.jobId);
    } else {
      await deps.stopDriver(req.jobId, config.cancelWaitMs);
    }
    const after = await store.require(req.jobId);
    logger.info({ job: req.jobId, state: JobState[after.state] }, 'job cancel requested');
    return { status: after };
  };

  const watchJob = async (
    req: WatchJobRequest,
    call: grpc.ServerWritableStream<WatchJobRequest, WatchJobResponse>,
  ): Promise<void> => {
    checkJobId(req.jobId);
    checkOwner(principalOf(call), 'WatchJob', await store.require(req.jobId));
    if (watchers >= config.maxWatchers) {
      throw new ResourceExhaustedError(`too many watchers (${config.maxWatchers}); try again later`);
    }
    watchers++;
    let conn: Redis | null = null;
    let cancelled = false;
    call.on('cancelled', () => (cancelled = true));
    const write = async (msg: WatchJobResponse): Promise<void> => {
      if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r()));
    };
    try {
      let lastId = '-';
      let ended = false;
      // replay
      for (;;) {
        const batch = await store.readEvents(req.jobId, lastId, WATCH_BATCH);
        for (const e of batch) {
          lastId = e.id;
          if (e.event.seq <= req.afterSeq) continue;
          await write({ event: e.event });
          if (endsJob(e.event.type, e.event.state)) ended = true;
        }
        if (batch.length < WATCH_BATCH || cancelled) break;
      }
      // live
      conn = deps.blockingConnection();
      while (!ended && !cancelled && !deps.closing()) {
        const batch = await store.waitEvents(
          conn,
          req.jobId,
          lastId === '-' ? '0-0' : lastId,
          WATCH_BLOCK_MS,
          WATCH_BATCH,
        );
        for (const e of batch) {
          lastId = e.id;
          if (e.event.seq <= req.afterSeq) continue;
          await write({ event: e.event });
          if (endsJob(e.event.type, e.event.state)) ended = true;
        }
        if (batch.length === 0 && !ended) {
          // the stream may have been trimmed past a terminal event: trust the hash then
          const status = await store.get(req.jobId);
          if (!status || isTerminal(status.state)) ended = true;
        }
      }
    } finally {
      watchers--;
      conn?.disconnect();
    }
  };

  const uploadDataset = createUploader({
    datasetDir: config.datasetDir,
    store: deps.datasetStore ?? null,
    maxBytes: config.uploadMaxBytes,
    maxInFlight: config.uploadMaxInFlight,
    timeoutMs: config.uploadTimeoutMs,
    logger,
  });

  return {
    submitJob: unaryHandler(logger, submitJob),
    getJob: unaryHandler(logger, getJob),
    listJobs: unaryHandler(logger, listJobs),
    cancelJob: unaryHandler(logger, cancelJob),
    watchJob: serverStreamHandler(logger, watchJob),
    generate: unaryHandler(logger, async (req: GenerateRequest, call) => {
      await checkGenerateAccess(store, principalOf(call), req.checkpoint);
      return deps.generate(req, () => call.cancelled);
    }),
    uploadDataset: clientStreamHandler(logger, uploadDataset),
  };
}

function endsJob(type: JobEventType, state: JobState): boolean {
  return type === JobEventType.JOB_EVENT_TYPE_STATE && isTerminal(state);
}

export type { JobStatus };
