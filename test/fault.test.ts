// Fault tolerance through the real services: a local cluster with TWO rollout and TWO verifier worker
// processes runs a small SPARK job; while a policy phase's rollout shards are being sampled, one rollout
// worker is SIGKILLed in the middle of a task (the rollout queue has 2 active shards and each worker
// processes one at a time, so the killed one holds a shard), and one verifier worker is SIGKILLed while
// verification work is in flight. BullMQ redelivers the dead workers' tasks (stalled-job detection; the
// rollout and verifier locks are shortened to 5 s so recovery takes seconds, not minutes) and the job must
// still finish.
//
// "Every group trained exactly once" is read from the learner's results in Redis: every learned
// (step, phase) has exactly one LearnResult, covering all B × G sequences of its B groups
// (sequences + skippedSequences), none refused as stale; and the policy versions of the updates are
// 1, 2, …, K without gaps or repeats, K being the job's final policy version — a group trained twice or an
// update run twice would add a version, a lost group would shrink a count.
//
// Then a write Redis lost: a job's first learn task is removed from its queue while no learner runs (as
// when Redis, killed within a second of the enqueue, replays an AOF without it); the coordinator must
// enqueue it again, and the job must finish.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { jobKeys, queueName, type LearnResult } from '@spark/contract';
import { Algorithm, JobSpec } from '@spark/protocol';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { until } from '@spark/runtime/testing';

const JOB = JobSpec.fromPartial({
  name: 'fault',
  model: 'tiny',
  algorithm: Algorithm.ALGORITHM_SPARK,
  seed: 5,
  trainSize: 256,
  batchSize: 8,
  groupSize: 4,
  maxSteps: 3,
  warmupSteps: 2,
  warmupBatchSize: 16,
  maxNewTokens: 32,
  miniBatchSize: 32,
  microBatchSize: 16,
  evalSize: 8,
});

describe('fault tolerance: workers killed mid-step', () => {
  let cluster: LocalCluster;
  let client: JobClient;
  let redis: Redis;

  before(async () => {
    cluster = await startLocalCluster({
      dataDir: mkdtempSync(join(tmpdir(), 'spark-fault-')),
      prefix: 'fault',
      rolloutWorkers: 2,
      verifierWorkers: 2,
      // 2 prompts per rollout shard (4 shards per phase), short rollout and verifier task locks (`lockMs`)
      // so redelivery is quick.
      env: { SPARK_SHARD_SIZE: '2', SPARK_LOCK_MS: '5000' },
    });
    client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
    redis = connectRedis(cluster.redisUrl);
  });
  after(async () => {
    client?.close();
    redis?.disconnect();
    await cluster?.stop();
  });

  it('finishes the job with every group trained exactly once after a rollout and a verifier worker die', async () => {
    const { jobId } = await client.submit(JOB);
    const finished = followJob(client, jobId, { out: null });
    finished.catch(() => undefined);
    const rolloutQ = createQueue(queueName('rollout', jobId), {
      url: cluster.redisUrl,
      prefix: cluster.prefix,
    });
    const verifyQ = createQueue(queueName('verify', jobId), {
      url: cluster.redisUrl,
      prefix: cluster.prefix,
    });
    try {
      // Mid-step of the first policy phase: both rollout workers hold a shard.
      await until(
        async () => {
          const active = await rolloutQ.getJobs(['active']);
          return active.filter((j) => /\/policy\//.test(j.id ?? '')).length >= 2;
        },
        { timeoutMs: 240_000, intervalMs: 20, message: 'two active rollout shards of a policy phase' },
      );
      assert.ok(cluster.kill('rollout-1', 'SIGKILL'));
      // Then a verifier with work in flight (verification is fast: kill it as soon as work is queued or active).
      await until(
        async () => {
          const n = await verifyQ.getJobCounts('active', 'wait');
          return (n.active ?? 0) + (n.wait ?? 0) > 0;
        },
        { timeoutMs: 120_000, intervalMs: 20, message: 'verification work in flight' },
      );
      assert.ok(cluster.kill('verifier-1', 'SIGKILL'));
    } finally {
      await rolloutQ.close();
      await verifyQ.close();
    }
    const outcome = await Promise.race([
      finished,
      cluster.failure.then((f) => {
        throw new Error(`${f.name} died (${f.signal ?? f.code}):\n${f.logTail}`);
      }),
    ]);
    assert.equal(outcome.state, 'SUCCEEDED', outcome.status.message);

    // Every learner update, exactly once.
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(
        cursor,
        'MATCH',
        `${cluster.prefix}:job:${jobId}:learned:*`,
        'COUNT',
        1000,
      );
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const results = new Map<string, LearnResult>();
    for (const key of keys) {
      const text = await redis.get(key);
      assert.ok(text);
      results.set(key.slice(key.indexOf(':learned:') + 9), JSON.parse(text) as LearnResult);
    }
    const policy = [...results.keys()].filter((k) => k.endsWith(':policy'));
    const reward = [...results.keys()].filter((k) => k.endsWith(':reward'));
    assert.deepEqual(
      policy.sort(),
      Array.from({ length: JOB.maxSteps }, (_, t) => `${t}:policy`),
    );
    assert.ok(reward.length > 0, 'the reward phase ran');
    for (const k of [...policy, ...reward]) {
      const r = results.get(k) as LearnResult & { skippedSequences?: number };
      assert.equal(r.staleGroups, 0, `${k}: stale groups`);
      assert.equal(r.sequences + (r.skippedSequences ?? 0), JOB.batchSize * JOB.groupSize, `${k}: sequences`);
    }
    const versions = [...results.values()].map((r) => r.policyVersion).sort((a, b) => a - b);
    assert.deepEqual(
      versions,
      Array.from({ length: versions.length }, (_, i) => i + 1),
      'one version per update',
    );
    assert.equal(outcome.status.policyVersion, versions.length);
    assert.equal(results.size, JOB.warmupSteps + policy.length + reward.length);
  });

  it('enqueues a learn task again when Redis lost it (gone from its queue, no result): the job finishes', async () => {
    // Redis with `appendfsync everysec` may lose its last acknowledged writes when it is killed; the driver
    // then waits for a task that no longer exists. Here the task is removed while no learner takes it.
    cluster.kill('learner', 'SIGKILL');
    const spec = JobSpec.fromPartial({ ...JOB, name: 'lost-task', maxSteps: 1, warmupSteps: 1 });
    const { jobId } = await client.submit(spec);
    const learnQ = createQueue(queueName('learn', jobId), { url: cluster.redisUrl, prefix: cluster.prefix });
    try {
      await until(async () => (await learnQ.getJobState('0/warmup')) === 'waiting', {
        timeoutMs: 60_000,
        message: 'the first learn task waiting',
      });
      assert.equal(await learnQ.remove('0/warmup'), 1);
      // the driver notices within its slow check (about 2 s) and enqueues it again
      await until(async () => (await learnQ.getJobState('0/warmup')) === 'waiting', {
        timeoutMs: 30_000,
        message: 'the lost learn task enqueued again',
      });
    } finally {
      await learnQ.close();
    }
    await cluster.restart('learner');
    const outcome = await followJob(client, jobId, { out: null });
    assert.equal(outcome.state, 'SUCCEEDED', outcome.status.message);
    assert.ok(await redis.exists(jobKeys.learned(cluster.prefix, jobId, 0, 'warmup')));
  });
});
