// JobQueueWorkers against a real Redis and real BullMQ queues: with a poll far longer than the test, a job
// added to the active set is served when the change is announced — by the one synchronisation the
// announcement triggers — and its worker is closed when the job leaves the set; without an announcement
// the set is not even read again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createLogger } from '@spark/runtime/logging';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { expectUnchanged, testPrefix, testRedisUrl, until } from '@spark/runtime/testing';
import { announceActiveChange, JobQueueWorkers } from './job-workers.js';
import { jobKeys, queueName } from './keys.js';

const logger = createLogger({ service: 'test', level: 'silent' });

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
    // every read of the active set is one synchronisation: count them, to tell what caused each
    const activeKey = jobKeys.active(prefix);
    let reads = 0;
    const counting = Object.create(redis) as Redis;
    counting.smembers = (key: string) => {
      if (key === activeKey) reads++;
      return redis.smembers(key);
    };
    const pollMs = 600_000; // never within this test: only announcements can start or stop a worker
    const workers = new JobQueueWorkers<{ n: number }, number>({
      url,
      prefix,
      role: 'verify',
      redis: counting,
      logger,
      pollMs,
      processorFor: (jobId) => async (job) => {
        seen.push(`${jobId}:${job.data.n}`);
        return job.data.n;
      },
    });
    const t0 = Date.now();
    await workers.start();
    const queue = createQueue<{ n: number }>(queueName('verify', 'j1'), { url, prefix });
    try {
      assert.deepEqual(workers.jobIds, []);
      assert.equal(reads, 1, 'start() reads the set once');
      await queue.add('t', { n: 1 }, { jobId: 'task-1' });
      // start() does not wait for its subscription: an announcement before it is in place would be lost
      // (and only the 10-minute poll would then serve the job), so wait until Redis counts the subscriber
      const channel = jobKeys.activeChanged(prefix);
      await until(
        async () => {
          const [, n] = (await redis.pubsub('NUMSUB', channel)) as [string, number];
          return Number(n) >= 1;
        },
        { message: `the workers' subscription to ${channel}` },
      );

      // a change of the set alone is not noticed: no announcement, no poll, so the set is not read again
      await redis.sadd(activeKey, 'j1');
      await expectUnchanged(() => ({ served: workers.jobIds, seen: [...seen], reads }), {
        forMs: 500,
        message: 'the workers without an announcement',
      });

      await announceActiveChange(redis, prefix);
      await until(() => seen.length === 1, { message: 'the task to be processed', timeoutMs: 60_000 });
      assert.deepEqual(workers.jobIds, ['j1']);
      assert.deepEqual(seen, ['j1:1']);
      // served because of the announcement: exactly one more read of the set, and the poll (which would
      // also read it) cannot have run yet
      assert.equal(reads, 2, 'one synchronisation, triggered by the announcement');
      assert.ok(Date.now() - t0 < pollMs, 'the test ran within one poll interval');

      await redis.srem(activeKey, 'j1');
      await announceActiveChange(redis, prefix);
      await until(() => workers.jobIds.length === 0, { message: 'the worker to close', timeoutMs: 60_000 });
      assert.equal(reads, 3, 'closed by the synchronisation the second announcement triggered');
    } finally {
      await workers.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.del(jobKeys.active(prefix));
    }
  });
});
