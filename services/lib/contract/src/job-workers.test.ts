// JobQueueWorkers against a real Redis and real BullMQ queues: with a poll far longer than the test, a job
// added to the active set is served at once when the change is announced, and its worker is closed when
// the job leaves the set; without an announcement nothing happens before the poll.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createLogger } from '@spark/runtime/logging';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';
import { announceActiveChange, JobQueueWorkers } from './job-workers.js';
import { jobKeys, queueName } from './keys.js';

const logger = createLogger({ service: 'test', level: 'silent' });

async function until(what: string, ms: number, fn: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('JobQueueWorkers', () => {
  let url: string;
  let redis: Redis;
  before(async () => {
    url = await testRedisUrl();
    redis = connectRedis(url);
    await new Promise((r) => redis.once('ready', r));
  });
  after(async () => {
    await redis.quit();
  });

  it('serves a job as soon as its activation is announced, and stops when its removal is', async () => {
    const prefix = testPrefix('job-workers');
    const seen: string[] = [];
    const workers = new JobQueueWorkers<{ n: number }, number>({
      url,
      prefix,
      role: 'verify',
      redis,
      logger,
      pollMs: 600_000, // never within this test: only announcements can start or stop a worker
      processorFor: (jobId) => async (job) => {
        seen.push(`${jobId}:${job.data.n}`);
        return job.data.n;
      },
    });
    await workers.start();
    const queue = createQueue<{ n: number }>(queueName('verify', 'j1'), { url, prefix });
    try {
      assert.deepEqual(workers.jobIds, []);
      await queue.add('t', { n: 1 }, { jobId: 'task-1' });

      // a change of the set alone is not noticed (no announcement, no poll within the test)
      await redis.sadd(jobKeys.active(prefix), 'j1');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(workers.jobIds, [], 'not served without an announcement');

      const t0 = Date.now();
      await announceActiveChange(redis, prefix);
      await until('the task to be processed', 10_000, () => seen.length === 1);
      assert.deepEqual(workers.jobIds, ['j1']);
      assert.deepEqual(seen, ['j1:1']);
      assert.ok(Date.now() - t0 < 10_000);

      await redis.srem(jobKeys.active(prefix), 'j1');
      await announceActiveChange(redis, prefix);
      await until('the worker to close', 10_000, () => workers.jobIds.length === 0);
    } finally {
      await workers.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.del(jobKeys.active(prefix));
    }
  });
});
