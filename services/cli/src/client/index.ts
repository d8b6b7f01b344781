// The CLI's gRPC client of the coordinator's JobService: one channel per command, the bearer token and a
// deadline on every unary call, an idle bound on the WatchJob stream, TLS when asked, and one error class
// (`ClusterCallError`) whose message says what went wrong in user terms — unreachable cluster, bad token,
// a refused permission (another principal's job, a missing role), every problem of a rejected job spec
// (from the `spark-problems-bin` trailer), unknown job.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

import { clientSetup, grpc, type ClientOptions } from '@spark/runtime/grpc';
import { problemsFromMetadata } from '@spark/runtime/errors';
import {
  JobServiceClient,
  jobStateToJSON,
  type GenerateRequest,
  type GenerateResponse,
  type JobEvent,
  type JobSpec,
  type JobStatus,
  type SubmitJobResponse,
  type UploadDatasetRequest,
  type UploadDatasetResponse,
} from '@spark/protocol';

/** Where to reach a cluster and how to authenticate. */
export interface ConnectOptions {
  /** host:port of the coordinator's JobService. */
  address: string;
  /** Bearer token, or null for a local-mode cluster. */
  token: string | null;
  /** Deadline of every unary call, in milliseconds (default 10 s). */
  deadlineMs?: number;
  /** PEM files for TLS (ca to trust the server; cert+key to present a client certificate). */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/** A failed call, described for a person; `code` is the gRPC status, `problems` any listed problems. */
export class ClusterCallError extends Error {
  constructor(
    message: string,
    readonly code: grpc.status,
    readonly problems: readonly string[] = [],
  ) {
    super(message);
    this.name = 'ClusterCallError';
  }
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';
}

/** Turns a gRPC error into a ClusterCallError with a clear, actionable message. */
export function describeCallError(err: unknown, what: string, address: string): Error {
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err));
  const details = err.details || err.message;
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return new ClusterCallError(
        `cannot reach the Spark cluster at ${address} (${details}). Is it running? Start one with \`spark up\`, ` +
          'or pass --address HOST:PORT.',
        err.code,
      );
    case grpc.status.UNAUTHENTICATED:
      return new ClusterCallError(
        `the cluster at ${address} refused the credentials (${details}). Pass --token TOKEN or set ` +
          'SPARK_AUTH_TOKEN to your token for the cluster (its shared token, a token of its tokens file, or an ' +
          'OIDC access token).',
        err.code,
      );
    case grpc.status.PERMISSION_DENIED:
      return new ClusterCallError(`${what} was refused: ${details}`, err.code);
    case grpc.status.INVALID_ARGUMENT: {
      const problems = problemsFromMetadata(err.metadata);
      const list = problems.length ? `:\n  - ${problems.join('\n  - ')}` : `: ${details}`;
      return new ClusterCallError(`${what} was rejected as invalid${list}`, err.code, problems);
    }
    case grpc.status.DEADLINE_EXCEEDED:
      return new ClusterCallError(
        `${what} got no answer from ${address} in time (deadline exceeded)`,
        err.code,
      );
    case grpc.status.NOT_FOUND:
    case grpc.status.FAILED_PRECONDITION:
      return new ClusterCallError(`${what}: ${details}`, err.code);
    default:
      return new ClusterCallError(
        `${what} failed (${grpc.status[err.code] ?? err.code}): ${details}`,
        err.code,
      );
  }
}

/** Terminal job states, by their proto enum names. */
export const TERMINAL_STATES = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);

/** A JobService client for one command's lifetime; call `close()` when done. */
export class JobClient {
  private readonly client: JobServiceClient;
  readonly address: string;
  private readonly deadlineMs: number;

  constructor(options: ConnectOptions) {
    this.address = options.address;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    const clientOptions: ClientOptions = {
      token: options.token,
      defaultDeadlineMs: this.deadlineMs,
      ...(options.tls ? { tls: options.tls } : {}),
    };
    const setup = clientSetup(clientOptions, options.address);
    this.client = new JobServiceClient(options.address, setup.credentials, setup.options);
  }

  private unary<Req, Res>(
    what: string,
    method: (
      req: Req,
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: (err: grpc.ServiceError | null, res: Res) => void,
    ) => grpc.ClientUnaryCall,
    request: Req,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      method(
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (err: grpc.ServiceError | null, res: Res) =>
          err ? reject(describeCallError(err, what, this.address)) : resolve(res),
      );
    });
  }

  submit(spec: JobSpec): Promise<SubmitJobResponse> {
    return this.unary('the job spec', this.client.submitJob.bind(this.client), { spec });
  }

  async get(jobId: string): Promise<JobStatus> {
    const res = await this.unary(`job ${jobId}`, this.client.getJob.bind(this.client), { jobId });
    if (!res.status) throw new ClusterCallError(`job ${jobId}: empty answer`, grpc.status.INTERNAL);
    return res.status;
  }

  async list(limit = 50): Promise<JobStatus[]> {
    return (await this.unary('listing jobs', this.client.listJobs.bind(this.client), { limit })).jobs;
  }

  async cancel(jobId: string): Promise<JobStatus> {
    const res = await this.unary(`cancelling job ${jobId}`, this.client.cancelJob.bind(this.client), {
      jobId,
    });
    if (!res.status) throw new ClusterCallError(`job ${jobId}: empty answer`, grpc.status.INTERNAL);
    return res.status;
  }

  /** JobService.Generate with its own deadline (generation takes longer than the other calls). */
  generate(request: GenerateRequest, deadlineMs: number): Promise<GenerateResponse> {
    return new Promise<GenerateResponse>((resolve, reject) => {
      this.client.generate(
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, res: GenerateResponse) => {
          if (!err) return resolve(res);
          // the coordinator's own UNAVAILABLE / DEADLINE_EXCEEDED answers (no worker, too slow) say more
          // than the transport's "cannot reach the cluster"
          if (
            (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) &&
            /^(no rollout worker|the generation task|the coordinator is shutting down|cannot open the)/.test(
              err.details,
            )
          )
            return reject(new ClusterCallError(`generation: ${err.details}`, err.code));
          reject(describeCallError(err, 'generation', this.address));
        },
      );
    });
  }

  /**
   * Uploads a local dataset file (JobService.UploadDataset, in 256 KiB chunks with backpressure); the
   * answer's `dataset` ("sha256:<hex>") is what a spec names. The whole upload has `deadlineMs`.
   */
  async uploadDataset(
    file: string,
    options: { format?: string; deadlineMs?: number } = {},
  ): Promise<UploadDatasetResponse> {
    const size = statSync(file).size;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    const sha256 = hash.digest('hex');
    let settled = false;
    let call: grpc.ClientWritableStream<UploadDatasetRequest> | null = null;
    const done = new Promise<UploadDatasetResponse>((resolve, reject) => {
      call = this.client.uploadDataset(
        new grpc.Metadata(),
        { deadline: Date.now() + (options.deadlineMs ?? 600_000) },
        (err: grpc.ServiceError | null, res: UploadDatasetResponse) => {
          settled = true;
          if (err) reject(describeCallError(err, `uploading ${basename(file)}`, this.address));
          else resolve(res);
        },
      );
    });
    const stream = call as unknown as grpc.ClientWritableStream<UploadDatasetRequest>;
    const ended = done.then(
      () => undefined,
      () => undefined,
    );
    const send = async (msg: UploadDatasetRequest): Promise<void> => {
      // the server may answer early (a refused header): stop writing then instead of waiting for drain
      if (!settled && !stream.write(msg)) await Promise.race([once(stream, 'drain'), ended]);
    };
    await send({
      part: {
        $case: 'header',
        value: { size, sha256, format: options.format ?? '', name: basename(file).slice(0, 256) },
      },
    });
    for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
      if (settled) break;
      await send({ part: { $case: 'chunk', value: chunk as Buffer } });
    }
    if (!settled) stream.end();
    return done;
  }

  /**
   * Follows a job's events (replayed from `afterSeq`, then live) until the server ends the stream. The
   * stream has no overall deadline (jobs run for minutes); instead it fails when no event arrives for
   * `idleMs` and the job is not known to be running (checked with GetJob).
   */
  async *watch(
    jobId: string,
    options: { afterSeq?: number; idleMs?: number } = {},
  ): AsyncGenerator<JobEvent> {
    const call = this.client.watchJob(
      { jobId, afterSeq: options.afterSeq ?? 0 },
      new grpc.Metadata(),
      // Far deadline: the interceptor would otherwise apply the short unary default.
      { deadline: Date.now() + 24 * 3600 * 1000 },
    );
    const idleMs = options.idleMs ?? 120_000;
    const queue: JobEvent[] = [];
    let ended = false;
    let failure: unknown = null;
    let wake: (() => void) | null = null;
    const notify = () => {
      wake?.();
      wake = null;
    };
    call.on('data', (msg: { event?: JobEvent }) => {
      if (msg.event) queue.push(msg.event);
      notify();
    });
    call.on('error', (err) => {
      failure = err;
      ended = true;
      notify();
    });
    call.on('end', () => {
      ended = true;
      notify();
    });
    try {
      for (;;) {
        const next = queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (ended) break;
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), idleMs);
          wake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        if (timedOut && queue.length === 0 && !ended) {
          // Silence is fine while the job runs; a job that is not running and sends nothing is stuck.
          const status = await this.get(jobId);
          if (TERMINAL_STATES.has(jobStateName(status.state)))
            throw new ClusterCallError(
              `job ${jobId}: no events for ${Math.round(idleMs / 1000)} s (state ${jobStateName(status.state)})`,
              grpc.status.DEADLINE_EXCEEDED,
            );
        }
      }
      if (failure !== null) {
        if (isServiceError(failure) && failure.code === grpc.status.CANCELLED) return;
        throw describeCallError(failure, `watching job ${jobId}`, this.address);
      }
    } finally {
      call.cancel();
    }
  }

  close(): void {
    this.client.close();
  }
}

/** The proto enum name of a job state ("JOB_STATE_RUNNING"). */
export function jobStateName(state: number): string {
  return jobStateToJSON(state);
}

/** The short lower-case form of a job state ("running"). */
export function shortState(state: number): string {
  return jobStateName(state)
    .replace(/^JOB_STATE_/, '')
    .toLowerCase();
}

/** The file `spark up` writes so later commands find the cluster without --address. */
export function clusterFile(dataDir: string): string {
  return join(dataDir, 'cluster.json');
}

/** Default data directory of `spark up` (ignored by git). */
export const DEFAULT_DATA_DIR = '.spark';

/**
 * Resolves where to connect: --address, else $SPARK_ADDRESS, else the address `spark up` recorded in
 * `<data dir>/cluster.json`. Throws a clear error when none is known.
 */
export function resolveConnect(opts: {
  address?: string;
  token?: string;
  dataDir?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  deadlineMs?: number;
}): ConnectOptions {
  let address = opts.address ?? process.env.SPARK_ADDRESS ?? '';
  let token: string | null = opts.token ?? process.env.SPARK_AUTH_TOKEN ?? null;
  if (!address) {
    const file = clusterFile(opts.dataDir ?? DEFAULT_DATA_DIR);
    if (existsSync(file)) {
      try {
        const rec = JSON.parse(readFileSync(file, 'utf8')) as {
          coordinatorAddress?: unknown;
          token?: unknown;
        };
        if (typeof rec.coordinatorAddress === 'string') address = rec.coordinatorAddress;
        if (token === null && typeof rec.token === 'string' && rec.token) token = rec.token;
      } catch {
        // fall through to the error below
      }
    }
  }
  if (!address)
    throw new Error(
      'no cluster address: pass --address HOST:PORT, set SPARK_ADDRESS, or start a local cluster with `spark up`',
    );
  if (!/^[^\s]{1,255}:\d{1,5}$/.test(address))
    throw new Error(`--address must be HOST:PORT, got "${address.slice(0, 100)}"`);
  const tls =
    opts.tlsCa || opts.tlsCert || opts.tlsKey
      ? {
          ...(opts.tlsCa ? { caFile: opts.tlsCa } : {}),
          ...(opts.tlsCert ? { certFile: opts.tlsCert } : {}),
          ...(opts.tlsKey ? { keyFile: opts.tlsKey } : {}),
        }
      : undefined;
  return {
    address,
    token: token || null,
    ...(opts.deadlineMs !== undefined ? { deadlineMs: opts.deadlineMs } : {}),
    ...(tls ? { tls } : {}),
  };
}
