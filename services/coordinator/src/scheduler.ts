// The coordinator's scheduler: it owns the running job drivers. `start()` recovers the job store (RUNNING
// jobs in the active set resume from their cursor; QUEUED jobs missing from the pending list are
// re-queued), then polls: while fewer than maxConcurrentJobs drivers run, the head of the pending list is
// moved to RUNNING (and into the active set workers follow) and its driver starts. `close()` stops
// scheduling and every driver (the jobs resume on the next start).
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ObjectStore } from '@spark/runtime/storage';

import { JobState, type JobSpec } from '@spark/protocol';
import { jobKeys, type QueueRole } from '@spark/contract';

import type { CoordinatorConfig } from './config.js';
import { JobDriver } from './driver.js';
import type { CoordinatorMetrics, MetricsSource } from './metrics.js';
import { isTerminal, type JobStore } from './store.js';

export interface SchedulerOptions {
  store: JobStore;
  redis: Redis;
  redisUrl: string;
  config: CoordinatorConfig;
  logger: Logger;
  metrics: CoordinatorMetrics;
  /** Where uploaded datasets are also kept (the drivers fetch a missing one back). */
  datasetStore?: ObjectStore | null;
}

export class JobScheduler {
  private readonly drivers = new Map<string, JobDriver>();
  private closing = false;
  /** Recovery done: kicks before it (a submission racing the start) wait for start()'s own pass. */
  private started = false;
  private scheduling: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: SchedulerOptions) {}

  /** Ids of the jobs whose drivers run in this process. */
  runningJobs(): string[] {
    return [...this.drivers.keys()];
  }

  /** True once close() began. */
  get isClosing(): boolean {
    return this.closing;
  }

  /** Recovers the store, then schedules now and every schedulePollMs. */
  async start(): Promise<void> {
    const { store, logger, config } = this.options;
    for (const id of await store.activeIds()) {
      const status = await store.get(id);
      if (status?.state === JobState.JOB_STATE_RUNNING && status.spec) {
        logger.info({ job: id, step: status.step }, 'resuming running job');
        this.startDriver(id, status.spec);
      } else if (!status || isTerminal(status.state)) {
        await store.removeActive(id);
      }
    }
    const pending = new Set(await store.pendingIds());
    for (const id of await store.queuedIds()) if (!pending.has(id)) await store.pushPending(id);
    this.started = true;
    this.timer = setInterval(() => this.kick(), config.schedulePollMs);
    this.timer.unref();
    this.kick();
  }

  /** Asks for a scheduling pass (after a submission, or when a driver ended). */
  kick(): void {
    if (this.closing || !this.started) return;
    this.scheduling = this.scheduling
      .then(() => this.schedule())
      .catch((err: unknown) => {
        this.options.metrics.error('scheduler');
        this.options.logger.warn({ err }, 'scheduler pass failed');
      });
  }

  /** Stops a job's driver (cancel), waiting up to `waitMs` for it to end. */
  async stopDriver(jobId: string, waitMs: number): Promise<void> {
    const d = this.drivers.get(jobId);
    if (!d) return;
    d.stop('cancel');
    await Promise.race([d.done, new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  /** Stops scheduling, then every driver (at its next wait), and waits for them to end. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    await this.scheduling;
    for (const d of this.drivers.values()) d.stop('shutdown');
    await Promise.all([...this.drivers.values()].map((d) => d.done));
  }

  /** Queue depths and the policy version lag of the running jobs, for the scrape-time metrics. */
  metricsSource(): Omit<MetricsSource, 'jobsByState'> {
    const { redis, config } = this.options;
    return {
      queueDepths: async () => {
        const sum: Record<QueueRole, number> = { rollout: 0, verify: 0, synthesis: 0, learn: 0 };
        for (const d of this.drivers.values()) {
          const q = await d.queueDepths().catch(() => null);
          if (!q) continue;
          for (const r of Object.keys(sum) as QueueRole[]) sum[r] += q[r];
        }
        return sum;
      },
      policyVersionLag: async () => {
        let lag = 0;
        for (const d of this.drivers.values()) {
          const published = Number(
            (await redis.hget(jobKeys.policy(config.redisPrefix, d.jobId), 'version').catch(() => null)) ?? 0,
          );
          lag = Math.max(lag, d.version - published);
        }
        return lag;
      },
    };
  }

  private startDriver(jobId: string, spec: JobSpec): void {
    const { store, redis, redisUrl, config, logger, metrics, datasetStore } = this.options;
    const driver = new JobDriver(jobId, spec, {
      store,
      redis,
      redisUrl,
      config,
      logger,
      metrics,
      datasetStore: datasetStore ?? null,
    });
    this.drivers.set(jobId, driver);
    driver.start();
    void driver.done.then(() => {
      this.drivers.delete(jobId);
      this.kick();
    });
  }

  private async schedule(): Promise<void> {
    const { store, config, logger } = this.options;
    while (!this.closing && this.drivers.size < config.maxConcurrentJobs) {
      const head = await store.pendingHead();
      if (head === null) return;
      const status = await store.get(head);
      if (!status || status.state !== JobState.JOB_STATE_QUEUED || !status.spec) {
        await store.removePending(head);
        continue;
      }
      await store.addActive(head);
      const moved = await store.transition(head, JobState.JOB_STATE_RUNNING, [JobState.JOB_STATE_QUEUED], {
        message: 'running',
      });
      await store.removePending(head);
      if (!moved) {
        await store.removeActive(head);
        continue;
      }
      logger.info({ job: head }, 'job started');
      this.startDriver(head, status.spec);
    }
  }
}
