// A learner group's generation moves past a failed one even when Redis is unreachable at the moment of
// the failure: the bump is owed and paid before the next formation (a real Redis, a real one-rank Gloo
// Collective; the outage is this rank's Redis client disconnected).
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';

import { createLogger } from '@spark/runtime/logging';
import { connectRedis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl, until } from '@spark/runtime/testing';

import { groupKey, JobGroup } from './group.js';

const silent = createLogger({
  service: 'learner-group-generation-test',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});

describe('learner group generation', () => {
  it('a failure during a Redis outage still moves this rank past the failed generation', async () => {
    const url = await testRedisUrl();
    const prefix = testPrefix('dp-gen');
    const redis = connectRedis(url);
    const observer = connectRedis(url);
    // the clients queue nothing while offline: wait until both are connected
    await until(() => redis.status === 'ready' && observer.status === 'ready');
    const group = new JobGroup({
      redis,
      prefix,
      jobId: 'job-gen',
      config: {
        rank: 0,
        worldSize: 1,
        zero: false,
        timeoutMs: 5_000,
        formTimeoutMs: 20_000,
        host: '127.0.0.1',
        redisUrl: url,
      },
      logger: silent,
    });
    try {
      await group.ready();
      assert.equal(group.generation, 0);

      // the outage: this rank's Redis client is gone when the step fails, so the bump cannot be written
      redis.disconnect();
      await until(() => redis.status === 'end');
      await group.fail(new Error('a peer died'));
      assert.equal(await observer.get(`${groupKey(prefix, 'job-gen')}:gen`), null, 'the bump did not land');

      // Redis back: the next formation pays the owed bump first and forms generation 1, not the failed 0
      await redis.connect();
      await until(() => redis.status === 'ready');
      await group.ready();
      assert.equal(group.generation, 1);
      assert.equal(await observer.get(`${groupKey(prefix, 'job-gen')}:gen`), '1');
    } finally {
      group.close();
      redis.disconnect();
      await observer.quit();
    }
  });
});
