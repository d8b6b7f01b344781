// Per-job workers: every queue is per job, so a worker service serves the queues of whichever jobs are
// active. JobQueueWorkers polls the active-job set and opens one BullMQ Worker per active job (closing it,
// gracefully, when the job leaves the set). Services use it instead of creating Workers by hand.
import type { Processor, Worker, WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import { createWorker } from '../redis/index.js';
import { jobKeys, queueName, type QueueRole } from './keys.js';

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
  /** How often the active set is read, in milliseconds (default 250). */
  pollMs?: number;
}

export class JobQueueWorkers<T, R> {
  private readonly workers = new Map<string, Worker<T, R>>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private syncing: Promise<void> = Promise.resolve();

  constructor(private readonly options: JobQueueWorkersOptions<T, R>) {}

  /** Starts following the active set; resolves after the first synchronisation. */
  async start(): Promise<void> {
    await this.sync();
    this.timer = setInterval(() => {
      this.syncing = this.syncing.then(() => this.sync());
    }, this.options.pollMs ?? 250);
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
    await this.syncing;
    await Promise.all([...this.workers.values()].map((w) => w.close()));
    this.workers.clear();
  }
}
