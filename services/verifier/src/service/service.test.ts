// The verifier service against a real Redis and real BullMQ queues: a shard of hand-made groups (right and
// wrong answers, judge verdicts in first/last boxes) is scored correctly and stored per group; a
// redelivered shard rewrites the same fields; a malformed payload fails once without retries; close()
// while a shard is being scored lets it finish; a shard held by a dead worker is redelivered within the
// configured lock and stalled-check interval.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  encodeJobSpec,
  jobKeys,
  queueName,
  type KindName,
  type PromptItem,
  type SampledGroup,
  type VerifiedGroup,
  type VerifyTask,
} from '@spark/contract';
import { createLogger } from '@spark/runtime/logging';
import { connectRedis, createQueue, workerOptions, type Redis } from '@spark/runtime/redis';
import { JobSpec } from '@spark/protocol';
import { Worker } from 'bullmq';
import { expectUnchanged, testPrefix, testRedisUrl, until } from '@spark/runtime/testing';

import { startVerifierService, verifierServiceConfig, type VerifierService } from './index.js';

const silent = createLogger({ service: 'test', level: 'silent' });

function prompt(id: string, kind: KindName, label: string): PromptItem {
  return { promptId: id, kind, text: `prompt ${id}`, label, sourceGroupId: null, question: null, tags: [] };
}

function group(step: number, p: PromptItem, texts: string[]): SampledGroup {
  return {
    groupId: `${step}/policy/${p.promptId}`,
    prompt: p,
    promptTokens: [4, 65, 2, 5],
    policyVersion: 3,
    responses: texts.map((text) => ({ text, tokens: [65, 2], logprobs: [-1, -2], finish: 'stop' as const })),
  };
}

/** Groups with the expected reward of each response. */
const CASES: { g: SampledGroup; expect: number[] }[] = [
  {
    g: group(1, prompt('p1', 'problem', '42'), [
      'so \\boxed{42}',
      'first \\boxed{41} then \\boxed{42}', // last box counts for answers
      '\\boxed{42} no wait \\boxed{43}',
      'no box 42',
    ]),
    expect: [1, 1, 0, 0],
  },
  {
    g: group(1, prompt('p2', 'problem', '\\frac{1}{2}'), ['\\boxed{0.5}', '\\boxed{1/2}', '\\boxed{2}']),
    expect: [1, 1, 0],
  },
  {
    g: group(1, prompt('j1', 'pointwise', 'Yes'), [
      '\\boxed{Yes}',
      '\\boxed{No}',
      '\\boxed{Yes} or \\boxed{No}', // judge: first box
      '\\boxed{yes}', // case-sensitive
    ]),
    expect: [1, 0, 1, 0],
  },
  {
    g: group(1, prompt('j2', 'pairwise', 'B'), ['\\boxed{B}', '\\boxed{A}', '\\boxed{A} hmm \\boxed{B}']),
    expect: [1, 0, 0],
  },
  {
    g: group(1, prompt('r1', 'reflection', '7'), ['the given answer is wrong, \\boxed{7}', '\\boxed{8}']),
    expect: [1, 0],
  },
];

function shard(jobId: string, shardId: string, groups: SampledGroup[]): VerifyTask {
  return { jobId, step: 1, phase: 'policy', shardId, groups };
}

void describe('verifier service', () => {
  let url: string;
  let redis: Redis;
  let svc: VerifierService | null = null;
  const prefix = testPrefix('verifier-svc');
  const jobId = 'vj1';
  before(async () => {
    url = await testRedisUrl();
    redis = connectRedis(url);
    await new Promise((r) => redis.once('ready', r));
    await redis.sadd(jobKeys.active(prefix), jobId);
  });
  after(async () => {
    await svc?.close();
    await redis.quit();
  });

  void it('scores a shard, stores one field per group, and a redelivery does not duplicate', async () => {
    const config = verifierServiceConfig({
      redisUrl: url,
      redisPrefix: prefix,
      pollMs: 20,
      logLevel: 'silent',
    });
    svc = await startVerifierService(config, { logger: silent });
    const queue = createQueue<VerifyTask>(queueName('verify', jobId), { url, prefix });
    after(() => queue.close());
    const task = shard(
      jobId,
      '1/policy/0',
      CASES.map((c) => c.g),
    );
    await queue.add('verify', task, { jobId: task.shardId });
    const key = jobKeys.groups(prefix, jobId, 1, 'policy');
    await until(async () => (await queue.getJobState(task.shardId)) === 'completed', {
      message: 'the shard to be scored',
    });
    const stored = await redis.hgetall(key);
    assert.equal(Object.keys(stored).length, CASES.length);
    for (const { g, expect } of CASES) {
      const v = JSON.parse(stored[g.groupId] ?? 'null') as VerifiedGroup;
      assert.deepEqual(
        v.responses.map((r) => r.reward),
        expect,
        `rewards of ${g.groupId}: ${v.responses.map((r) => r.reason).join(', ')}`,
      );
      assert.equal(v.policyVersion, 3);
      assert.deepEqual(v.promptTokens, g.promptTokens);
      assert.deepEqual(
        v.responses.map((r) => r.text),
        g.responses.map((r) => r.text),
      );
    }
    const p1 = JSON.parse(stored['1/policy/p1'] ?? 'null') as VerifiedGroup;
    assert.equal(p1.responses[1]?.extracted, '42');

    // redelivery of the same shard (BullMQ at-least-once): same fields, same content
    await queue.add('verify', task, { jobId: `${task.shardId}-again` });
    await until(async () => (await queue.getJobState(`${task.shardId}-again`)) === 'completed', {
      message: 'the redelivered shard to be scored',
    });
    assert.deepEqual(await redis.hgetall(key), stored);

    const metrics = await svc.metrics.registry.metrics();
    assert.match(metrics, /spark_verifier_responses_verified_total\{kind="pointwise",result="correct"\} 4/);
    assert.match(metrics, /spark_verifier_reward_ratio\{kind="problem"\} 0\.5714/);
  });

  void it('rewards answers without a box only for a job whose spec sets verifyUnboxed', async () => {
    const config = verifierServiceConfig({
      redisUrl: url,
      redisPrefix: prefix,
      pollMs: 20,
      logLevel: 'silent',
    });
    svc ??= await startVerifierService(config, { logger: silent });
    const g = group(2, prompt('u1', 'problem', '7.78'), [
      'so the final answer is 7.78',
      'I think it is $7.78$.',
      '\\boxed{7.78}',
      'the final answer is 9',
    ]);
    const rewardsOf = async (job: string, unboxed: boolean): Promise<number[]> => {
      await redis.hset(
        jobKeys.job(prefix, job),
        'spec',
        encodeJobSpec(JobSpec.fromPartial({ verifyUnboxed: unboxed })),
      );
      await redis.sadd(jobKeys.active(prefix), job);
      await redis.publish(jobKeys.activeChanged(prefix), job);
      const queue = createQueue<VerifyTask>(queueName('verify', job), { url, prefix });
      try {
        const task = { jobId: job, step: 2, phase: 'policy' as const, shardId: '2/policy/0', groups: [g] };
        await queue.add('verify', task, { jobId: task.shardId });
        await until(async () => (await queue.getJobState(task.shardId)) === 'completed', {
          timeoutMs: 60_000,
          message: `the shard of ${job} to be scored`,
        });
      } finally {
        await queue.close();
      }
      const v = JSON.parse(
        (await redis.hget(jobKeys.groups(prefix, job, 2, 'policy'), g.groupId)) ?? 'null',
      ) as VerifiedGroup;
      return v.responses.map((r) => r.reward);
    };
    assert.deepEqual(
      await rewardsOf('vj-unboxed', true),
      [1, 1, 1, 0],
      'unboxed answers count when the spec says so',
    );
    assert.deepEqual(
      await rewardsOf('vj-boxed', false),
      [0, 0, 1, 0],
      'the default: only a boxed answer counts',
    );
  });

  void it('fails a malformed shard at once (no retries)', async () => {
    const queue = createQueue<unknown>(queueName('verify', jobId), { url, prefix });
    after(() => queue.close());
    await queue.add('verify', { jobId, step: 'x', groups: 'nope' }, { jobId: 'bad-1', attempts: 5 });
    await until(async () => (await queue.getJobState('bad-1')) === 'failed', {
      message: 'the malformed shard to fail',
    });
    const job = await queue.getJob('bad-1'); // read after it failed, so failure fields are set
    assert.ok(job);
    assert.ok(job.attemptsMade <= 1, `attempts: ${job.attemptsMade}`);
    // 'failed' with attempts left already means no retry was scheduled (a retry is 'delayed'); and it stays
    // so well past the first back-off (500 ms)
    await expectUnchanged(
      async () => ({ state: await job.getState(), attempts: (await queue.getJob('bad-1'))?.attemptsMade }),
      { forMs: 1_500, message: 'the failed malformed shard' },
    );
    assert.match((job.stacktrace ?? []).join('\n'), /UnrecoverableError: invalid VerifyTask/);
  });

  void it('close() while a shard is being scored lets it finish', async () => {
    const queue = createQueue<VerifyTask>(queueName('verify', jobId), { url, prefix });
    after(() => queue.close());
    // a larger shard: 1200 groups × 16 numeric answers (no symbolic step, so the machine's load does not
    // turn answers into time-outs), large enough that scoring it outlasts the 5 ms state polling below even
    // on an idle machine
    const groups = Array.from({ length: 1200 }, (_, i) =>
      group(
        2,
        prompt(`big${i}`, 'problem', `\\frac{${i}}{2}`),
        Array.from({ length: 16 }, (_, k) => `so \\boxed{${(i + k) / 2}}`),
      ),
    );
    const task: VerifyTask = { jobId, step: 2, phase: 'policy', shardId: '2/policy/0', groups };
    await queue.add('verify', task, { jobId: task.shardId });
    // taken (active) or already past it: a poll can miss the active state only if the whole shard was
    // scored between two polls, and then the test cannot close during scoring, which it must say
    const state = await until(
      async () => {
        const st = await queue.getJobState(task.shardId);
        return ['active', 'completed', 'failed'].includes(st) && st;
      },
      { timeoutMs: 60_000, intervalMs: 5, message: 'the large shard to be taken' },
    );
    assert.equal(
      state,
      'active',
      'the shard was scored between two polls: too small to close during scoring',
    );
    assert.ok(svc);
    await svc.close();
    svc = null;
    assert.equal(await queue.getJobState(task.shardId), 'completed');
    const stored = await redis.hgetall(jobKeys.groups(prefix, jobId, 2, 'policy'));
    assert.equal(Object.keys(stored).length, 1200);
    const g5 = JSON.parse(stored['2/policy/big5'] ?? 'null') as VerifiedGroup;
    // (5 + k)/2 = 5/2 only for k = 0
    assert.deepEqual(
      g5.responses.map((r) => r.reward),
      [1, ...Array<number>(15).fill(0)],
    );
  });
});

void describe('verifier service: the shard of a dead worker', () => {
  void it('is redelivered after lockMs, at the next stalled checks of a live worker', async () => {
    const url = await testRedisUrl();
    const prefix = testPrefix('verifier-stall');
    const jobId = 'vj2';
    const redis = connectRedis(url);
    const queue = createQueue<VerifyTask>(queueName('verify', jobId), { url, prefix });
    let svc: VerifierService | null = null;
    try {
      await new Promise((r) => redis.once('ready', r));
      await redis.sadd(jobKeys.active(prefix), jobId);
      const task = shard(jobId, '1/policy/0', [CASES[0]?.g as SampledGroup]);
      await queue.add('verify', task, { jobId: task.shardId });
      // a worker that takes the shard (1 s lock) and dies without finishing or renewing it
      const dead = new Worker(queueName('verify', jobId), null, {
        connection: workerOptions(url),
        prefix,
        autorun: false,
        lockDuration: 1_000,
      });
      const taken = await dead.getNextJob('dead-token');
      assert.equal(taken?.id, task.shardId);
      await dead.close(true); // gone without finishing: its lock is left to expire
      assert.equal(await queue.getJobState(task.shardId), 'active');

      svc = await startVerifierService(
        verifierServiceConfig({
          redisUrl: url,
          redisPrefix: prefix,
          pollMs: 20,
          logLevel: 'silent',
          lockMs: 1_000,
          stalledIntervalMs: 1_000,
        }),
        { logger: silent },
      );
      // two stalled checks (mark, then move) a second apart: a few seconds. BullMQ's default interval is
      // 30 s (the second check at 30 s at the earliest), so a redelivery within 25 s, however loaded the
      // machine, shows the configured 1 s checks at work. The bound is the assertion.
      await until(async () => (await queue.getJobState(task.shardId)) === 'completed', {
        timeoutMs: 25_000,
        message: 'the redelivered shard to be scored before a default (30 s) stalled check could run',
      });
      const stored = await redis.hgetall(jobKeys.groups(prefix, jobId, 1, 'policy'));
      assert.deepEqual(Object.keys(stored), [CASES[0]?.g.groupId]);
    } finally {
      await svc?.close();
      await queue.close();
      await redis.quit();
    }
  });
});
