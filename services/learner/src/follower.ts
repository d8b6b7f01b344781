// A follower rank of the learner group (rank > 0): it takes no queue task, serves no weights and writes
// no checkpoint. It follows the active-job set; for each active job it joins the job's group and trains
// whatever the leader broadcasts (Learner.follow). A failed step or a broken group closes this rank's
// Collective (its peers fail at once) and re-joins under the next generation; the step was rolled back.
import { jobKeys } from '@spark/contract';
import type { Logger } from '@spark/runtime/logging';
import type { Redis } from '@spark/runtime/redis';

import { decodeEnvelope, ZeroStateLostError } from './group.js';
import type { Learner } from './learner.js';

export interface FollowerOptions {
  readonly learner: Learner;
  readonly redis: Redis;
  readonly prefix: string;
  readonly logger: Logger;
  /** How often the active-job set is polled, in ms. */
  readonly pollMs: number;
}

/** The follower's processor: one loop per active job. */
export class FollowerRank {
  private readonly loops = new Map<string, { stop: boolean; done: Promise<void> }>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: FollowerOptions) {}

  /** Job ids this rank follows now. */
  get jobIds(): string[] {
    return [...this.loops.keys()];
  }

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.options.pollMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const [jobId, loop] of this.loops) {
      loop.stop = true;
      this.options.learner.leaveGroup(jobId);
    }
    await Promise.allSettled([...this.loops.values()].map((l) => l.done));
    this.loops.clear();
  }

  private async poll(): Promise<void> {
    if (this.closed) return;
    let active: Set<string>;
    try {
      active = new Set(await this.options.redis.smembers(jobKeys.active(this.options.prefix)));
    } catch (err) {
      this.options.logger.warn({ err }, 'cannot read the active-job set');
      return;
    }
    for (const jobId of active) {
      if (this.loops.has(jobId) || this.closed) continue;
      const loop = { stop: false, done: Promise.resolve() };
      loop.done = this.follow(jobId, loop).finally(() => {
        if (this.loops.get(jobId) === loop) this.loops.delete(jobId);
      });
      this.loops.set(jobId, loop);
    }
    for (const [jobId, loop] of this.loops) {
      if (active.has(jobId)) continue;
      loop.stop = true;
      this.options.learner.leaveGroup(jobId);
    }
  }

  private async follow(jobId: string, loop: { stop: boolean }): Promise<void> {
    const { learner, logger } = this.options;
    while (!loop.stop && !this.closed) {
      const group = learner.group(jobId);
      if (!group) return;
      try {
        const job = await learner.ensureJob(jobId);
        const c = await group.ready();
        const bytes = await c.broadcastBytes(null, 0);
        const envelope = decodeEnvelope(bytes, jobId);
        const run = job.tail.then(() => learner.follow(job, envelope, c));
        job.tail = run.catch(() => undefined);
        await run;
        group.lastOp = Date.now();
      } catch (err) {
        if (loop.stop || this.closed) return;
        logger.warn({ err, job: jobId }, 'learner group step failed on this rank');
        await group.fail(err);
        // the leader reloads the job from its checkpoint: start again from the spec, to be brought to it
        if (err instanceof ZeroStateLostError) await learner.dropJob(jobId).catch(() => undefined);
        // a group that cannot form (the leader is away) is retried after a pause, not in a tight loop
        if (!group.formed) await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}
