import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { ResourceExhaustedError, UnavailableError } from '../errors/index.js';
import { testPrefix, testRedisUrl, until } from '../testing/index.js';
import {
  createQueue,
  createQueueEvents,
  createWorker,
  enqueueBounded,
  redactRedisUrl,
  redisAnswers,
  startPrivateRedis,
  UnrecoverableError,
  type Job,
} from './index.js';

describe('redis', () => {
  let url = '';
  before(async () => {
    url = await testRedisUrl();
  });

  it('starts and stops a private redis-server on a free port', async () => {
    const priv = await startPrivateRedis();
    assert.ok(await redisAnswers(priv.url));
    assert.notEqual(priv.port, 6379);
    await priv.stop();
    assert.equal(await redisAnswers(priv.url, 300), false);
  });

  it('explains how to install redis-server when it is missing', async () => {
    await assert.rejects(startPrivateRedis({ binary: 'redis-server-does-not-exist' }), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /apt-get install -y redis-server/);
      return true;
    });
  });

  it('redacts passwords from URLs', () => {
    assert.equal(redactRedisUrl('redis://user:hunter2@h:6379/0'), 'redis://user:***@h:6379/0');
  });

  describe('BullMQ', () => {
    const closers: (() => Promise<unknown>)[] = [];
    after(async () => {
      for (const c of closers.reverse()) await c();
    });

    it('delivers each deterministic job id once, and fails poison input without retrying', async () => {
      const prefix = testPrefix('bullmq');
      const queue = createQueue<{ n: number }>('work', { url, prefix });
      closers.push(() => queue.close());
      await queue.waitUntilReady();
      const events = createQueueEvents('work', { url, prefix });
      closers.push(() => events.close());
      await events.waitUntilReady();

      const seen: number[] = [];
      let poisonAttempts = 0;
      const worker = createWorker<{ n: number }, number>(
        'work',
        async (job: Job<{ n: number }>) => {
          if (job.data.n < 0) {
            poisonAttempts++;
            throw new UnrecoverableError('negative input');
          }
          seen.push(job.data.n);
          return job.data.n * 2;
        },
        { url, prefix, concurrency: 2 },
      );
      closers.push(() => worker.close());

      const done = new Promise<void>((resolve) => {
        let completed = 0;
        let failed = 0;
        const check = () => completed === 3 && failed === 1 && resolve();
        events.on('completed', () => {
          completed++;
          check();
        });
        events.on('failed', () => {
          failed++;
          check();
        });
      });
      for (const n of [1, 2, 3, 2, 1]) {
        await enqueueBounded(queue, 'item', { n }, { jobId: `item-${n}`, maxDepth: 100 });
      }
      await enqueueBounded(queue, 'item', { n: -1 }, { jobId: 'poison', maxDepth: 100 });
      await done;
      assert.deepEqual([...seen].sort(), [1, 2, 3]);
      assert.equal(poisonAttempts, 1, 'UnrecoverableError is not retried');
      const failedJob = await queue.getJob('poison');
      assert.match(failedJob?.failedReason ?? '', /negative input/);
      assert.equal((await queue.getJob('item-2'))?.returnvalue, 4);
    });

    it('reads queue events from a given last event id, so none between that id and the first read is lost', async () => {
      const prefix = testPrefix('bullmq-ev');
      const queue = createQueue<{ n: number }>('work', { url, prefix });
      closers.push(() => queue.close());
      await queue.waitUntilReady();
      const worker = createWorker<{ n: number }, number>('work', async (job) => job.data.n, { url, prefix });
      closers.push(() => worker.close());
      const finished = (id: string) =>
        until(async () => (await queue.getJob(id))?.finishedOn, { message: `job ${id} to finish` });
      await enqueueBounded(queue, 'item', { n: 1 }, { jobId: 'before', maxDepth: 10 });
      await finished('before');
      // the stream's last entry now, then a job that completes BEFORE the events connection exists
      const client = await queue.client;
      const tail = await client.xrevrange(queue.toKey('events'), '+', '-', 'COUNT', 1);
      const lastEventId = tail[0]?.[0];
      assert.ok(lastEventId, 'the events stream has entries');
      await enqueueBounded(queue, 'item', { n: 2 }, { jobId: 'between', maxDepth: 10 });
      await finished('between');
      const events = createQueueEvents('work', { url, prefix, lastEventId });
      closers.push(() => events.close());
      const completed = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no completed event within 60 s')), 60_000);
        events.on('completed', ({ jobId }) => {
          clearTimeout(timer);
          resolve(jobId);
        });
      });
      assert.equal(completed, 'between', 'the event after lastEventId, not an older one');
    });

    it('refuses to grow a queue past its bound', async () => {
      const prefix = testPrefix('bounded');
      const queue = createQueue<{ n: number }>('bounded', { url, prefix });
      closers.push(() => queue.close());
      await queue.waitUntilReady();
      await enqueueBounded(queue, 'x', { n: 1 }, { jobId: 'a', maxDepth: 2 });
      await enqueueBounded(queue, 'x', { n: 2 }, { jobId: 'b', maxDepth: 2 });
      await assert.rejects(
        enqueueBounded(queue, 'x', { n: 3 }, { jobId: 'c', maxDepth: 2 }),
        ResourceExhaustedError,
      );
      assert.equal(await queue.count(), 2);
    });

    it('close() waits for the active job to finish (graceful shutdown loses nothing)', async () => {
      const prefix = testPrefix('graceful');
      const queue = createQueue<{ n: number }>('slow', { url, prefix });
      closers.push(() => queue.close());
      await queue.waitUntilReady();
      let started!: () => void;
      const startedP = new Promise<void>((r) => (started = r));
      let finished = false;
      const worker = createWorker<{ n: number }, void>(
        'slow',
        async () => {
          started();
          await new Promise((r) => setTimeout(r, 300));
          finished = true;
        },
        { url, prefix },
      );
      await enqueueBounded(queue, 'x', { n: 1 }, { jobId: 'slow-1', maxDepth: 10 });
      await startedP;
      await worker.close();
      assert.equal(finished, true);
      assert.equal(await (await queue.getJob('slow-1'))?.getState(), 'completed');
    });
  });
});

describe('redis URLs', () => {
  it('parses credentials, database and TLS, and rejects other schemes', async () => {
    const { redisOptionsFromUrl } = await import('./index.js');
    assert.deepEqual(redisOptionsFromUrl('redis://u:p%40ss@example:6380/2'), {
      host: 'example',
      port: 6380,
      username: 'u',
      password: 'p@ss',
      db: 2,
    });
    assert.deepEqual(redisOptionsFromUrl('rediss://h').tls, {});
    assert.throws(() => redisOptionsFromUrl('http://h'), /redis:\/\//);
    assert.throws(() => redisOptionsFromUrl('not a url'), /invalid Redis URL/);
  });
});
