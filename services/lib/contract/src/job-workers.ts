// Per-job workers: every queue is per job, so a worker service serves the queues of whichever jobs are
// active. JobQueueWorkers follows the active-job set and opens one BullMQ Worker per active job (closing
// it, gracefully, when the job leaves the set). Services use it instead of creating Workers by hand. The
// coordinator announces every change of the set on a pub/sub channel (announceActiveChange), so a new
// job's queues are served at once; the poll of the set is the safety net for a missed message.
import type { Job, Processor, Worker, WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

import { InvalidArgumentError } from '@spark/runtime';
import { createWorker, UnrecoverableError, workerOptions } from '@spark/runtime/redis';
import type { BaseServiceConfig, ServiceContext } from '@spark/runtime/service';
import { jobKeys, queueName, type QueueRole } from './keys.js';

/** What a per-job worker takes from its service: the service skeleton's context. */
export type WorkerHost = Pick<
  ServiceContext<BaseServiceConfig>,
  'redis' | 'redisUrl' | 'logger' | 'metrics' | 'config'
>;

/** JobQueueWorkers of `role` on the host's Redis and key prefix; each job's tasks go to `process`. */
export function followJobQueues<T, R>(
  host: WorkerHost,
  role: QueueRole,
  process: (jobId: string, job: Job<T, R>) => Promise<R>,
  options: FollowOptions,
): JobQueueWorkers<T, R> {
  return new JobQueueWorkers<T, R>({
    url: host.redisUrl,
    prefix: host.config.redisPrefix,
    role,
    redis: host.redis,
    logger: host.logger,
    processorFor: (jobId) => {
      options.onJob?.(jobId);
      return (job) => process(jobId, job);
    },
    pollMs: options.pollMs,
    ...(options.workerOptions ? { workerOptions: options.workerOptions } : {}),
  });
}

/** The options of `followJobQueues` (and of a `JobQueueProcessor`). */
export interface FollowOptions {
  pollMs: number;
  workerOptions?: Partial<WorkerOptions>;
  /** Called once when a job's worker opens (e.g. to load what its tasks will need). */
  onJob?: (jobId: string) => void;
}

/**
 * A service processor that serves the `role` queue of every active job: a subclass names its queue and
 * options once and implements `process`; starting, following jobs and closing are here.
 */
export abstract class JobQueueProcessor<T, R> {
  private readonly workers: JobQueueWorkers<T, R>;

  protected constructor(
    protected readonly host: WorkerHost,
    role: QueueRole,
    options: FollowOptions,
  ) {
    this.workers = followJobQueues(host, role, (jobId, job: Job<T, R>) => this.process(jobId, job), options);
  }

  start(): Promise<void> {
    return this.workers.start();
  }

  /** Lets running tasks finish and closes every job's worker. */
  close(): Promise<void> {
    return this.workers.close();
  }

  /** Runs one task of job `jobId` (its data still unchecked: parse it with `taskOnJobQueue`). */
  protected abstract process(jobId: string, job: Job<T, R>): Promise<R>;
}

/**
 * A task at its job queue's boundary: `parse` checks its shape, and it must belong to the queue's job.
 * A malformed task, or one of another job, fails at once (UnrecoverableError: retrying cannot help).
 */
export function taskOnJobQueue<T extends { jobId: string }>(
  data: unknown,
  jobId: string,
  parse: (data: unknown) => T,
): T {
  try {
    const task = parse(data);
    if (task.jobId !== jobId)
      throw new InvalidArgumentError(`task of job ${task.jobId} on job ${jobId}'s queue`);
    return task;
  } catch (err) {
    throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
  }
}

/** Tells every JobQueueWorkers of the deployment that the active-job set changed (after changing it). */
export async function announceActiveChange(redis: Redis, prefix: string): Promise<void> {
  await redis.publish(jobKeys.activeChanged(prefix), '1');
}

export interface JobQueueWorkersOptions<T, R> {
  url: string;
  prefix: string;
  role: QueueRole;
  /** Client used to read the active-job set. */
  redis: Redis;
  logger: Logger;
  /** The processor of one job's queue. */
  processorFor: (jobId: string) => Processor<T, R>;
  /** Extra BullMQ worker options (concurrency, lockDuration, …). */
  workerOptions?: Partial<WorkerOptions>;
  /** How often the active set is read without an announcement, in milliseconds (default 250). */
  pollMs?: number;
}

export class JobQueueWorkers<T, R> {
  private readonly workers = new Map<string, Worker<T, R>>();
  private timer: NodeJS.Timeout | null = null;
  private subscriber: Redis | null = null;
  private closed = false;
  private syncing: Promise<void> = Promise.resolve();
  /** A synchronisation is queued behind the running one (further requests join it). */
  private queued = false;

  constructor(private readonly options: JobQueueWorkersOptions<T, R>) {}

  /** Starts following the active set; resolves after the first synchronisation. */
  async start(): Promise<void> {
    // subscribed before the first read, so no announcement after that read is missed; a dedicated
    // connection (a subscribed client can issue no other command), re-subscribed on reconnects
    const sub = new Redis(workerOptions(this.options.url));
    sub.on('error', () => undefined); // reconnects on its own; the poll covers the gap
    sub.on('message', () => this.requestSync());
    this.subscriber = sub;
    // awaited (a failure only logged: the poll covers it), so that a close() right after start() never
    // cuts a subscription off mid-flight
    await sub.subscribe(jobKeys.activeChanged(this.options.prefix)).catch((err: unknown) => {
      if (!this.closed) this.options.logger.warn({ err }, 'cannot subscribe to active-set announcements');
    });
    await this.sync();
    this.timer = setInterval(() => this.requestSync(), this.options.pollMs ?? 250);
  }

  private requestSync(): void {
    if (this.queued || this.closed) return;
    this.queued = true;
    this.syncing = this.syncing.then(() => {
      this.queued = false;
      return this.sync();
    });
  }

  /** Job ids currently served. */
  get jobIds(): string[] {
    return [...this.workers.keys()];
  }

  private async sync(): Promise<void> {
    if (this.closed) return;
    let active: string[];
    try {
      active = await this.options.redis.smembers(jobKeys.active(this.options.prefix));
    } catch (err) {
      this.options.logger.warn({ err }, 'cannot read the active job set');
      return;
    }
    const want = new Set(active);
    for (const jobId of want) {
      if (this.workers.has(jobId) || this.closed) continue;
      const worker = createWorker<T, R>(
        queueName(this.options.role, jobId),
        this.options.processorFor(jobId),
        {
          url: this.options.url,
          prefix: this.options.prefix,
          ...(this.options.workerOptions ?? {}),
        },
      );
      worker.on('error', (err) => this.options.logger.warn({ err, job: jobId }, 'worker error'));
      worker.on('failed', (job, err) =>
        this.options.logger.warn(
          { err, job: jobId, task: job?.id, attempts: job?.attemptsMade },
          'task failed',
        ),
      );
      this.workers.set(jobId, worker);
      // its connections set up before the next step (a close() during their set-up leaves rejections behind)
      await worker.waitUntilReady().catch((err: unknown) => {
        if (!this.closed) this.options.logger.warn({ err, job: jobId }, 'worker not ready');
      });
      this.options.logger.info({ job: jobId, role: this.options.role }, 'serving job queue');
    }
    for (const [jobId, worker] of this.workers) {
      if (want.has(jobId)) continue;
      this.workers.delete(jobId);
      await worker.close();
      this.options.logger.info({ job: jobId, role: this.options.role }, 'stopped serving job queue');
    }
  }

  /** Stops polling and closes every worker, waiting for active tasks to finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const sub = this.subscriber;
    this.subscriber = null;
    // QUIT waits for the replies of commands already sent, so none is left to reject after the close
    await sub?.quit().catch(() => sub.disconnect());
    await this.syncing;
    await Promise.all([...this.workers.values()].map((w) => w.close()));
    this.workers.clear();
  }
}
