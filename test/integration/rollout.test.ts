// The rollout service end to end against the REAL learner (its PolicyService over real gRPC on loopback),
// a real Redis and the real native tiny model: a shard is sampled at exactly the task's policy version
// with the learner's weights (re-sampled locally from a separately fetched copy: identical tokens), a task
// asking for a version the learner does not hold is refused (not sampled) and retried until the learner
// publishes it, and close() while a shard is sampling lets it finish.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  fetchPolicy,
  groupSeed,
  jobKeys,
  queueName,
  type LearnHyper,
  type LearnTask,
  type PromptItem,
  type RolloutTask,
  type VerifyTask,
} from '@spark/contract';
import { renderPromptTokens } from '@spark/method/tokenizers';
import { loadConfig } from '@spark/runtime/config';
import { createLogger } from '@spark/runtime/logging';
import { JobSpec } from '@spark/protocol';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl, until } from '@spark/runtime/testing';
import { charTokenizer, CHAR_EOS } from '@spark/method/tokenizers';
import { Model, parseHfConfig } from '@spark/kernels';
import { learnerConfigShape, startLearner, whenRedisReady, type LearnerService } from '@spark/learner';
import type { Queue } from 'bullmq';

import { rolloutConfig, startRollout, type RolloutService } from '@spark/rollout';

const silent = createLogger({ service: 'test', level: 'silent' });
const JOB = 'ro-1';

const hyper: LearnHyper = {
  learningRate: 1e-2,
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  miniBatchSize: 4,
  microBatchSize: 4,
  maxGradNorm: 1,
  beta1: 0.9,
  beta2: 0.95,
  weightDecay: 0,
};

function prompt(i: number): PromptItem {
  return {
    promptId: `p${i}`,
    kind: 'problem',
    text: `What is ${i} + ${i}?`,
    label: String(2 * i),
    sourceGroupId: null,
    question: `What is ${i} + ${i}?`,
    tags: [],
  };
}

function rolloutTask(
  shard: string,
  version: number,
  prompts: number,
  G: number,
  maxNewTokens = 12,
): RolloutTask {
  return {
    jobId: JOB,
    step: 1,
    phase: 'policy',
    shardId: shard,
    policyVersion: version,
    groupSize: G,
    sampling: { temperature: 1, topP: 1, maxNewTokens, seed: 99 },
    prompts: Array.from({ length: prompts }, (_, i) => prompt(i)),
  };
}

void describe('rollout service (real learner, real gRPC, real model)', () => {
  let url: string;
  let prefix: string;
  let redis: Redis;
  let dir: string;
  let learner: LearnerService;
  let rollout: RolloutService | null = null;
  let rolloutQ: Queue<RolloutTask>;
  let verifyQ: Queue<VerifyTask>;

  before(async () => {
    url = await testRedisUrl();
    prefix = testPrefix('rollout');
    redis = connectRedis(url);
    await whenRedisReady(redis);
    dir = await mkdtemp(join(tmpdir(), 'spark-rollout-'));
    const spec = JobSpec.fromPartial({ model: 'tiny', seed: 5, checkpointDir: join(dir, JOB) });
    await redis.hset(jobKeys.job(prefix, JOB), {
      spec: JSON.stringify(JobSpec.toJSON(spec)),
      state: 'RUNNING',
    });
    await redis.sadd(jobKeys.active(prefix), JOB);
    learner = await startLearner(
      loadConfig('learner', learnerConfigShape, {
        env: {},
        overrides: {
          redisUrl: url,
          redisPrefix: prefix,
          localMode: true,
          dataDir: dir,
          logLevel: 'silent',
          activePollMs: 30,
        },
      }),
      { logger: silent },
    );
    rollout = await startRollout(
      rolloutConfig({
        redisUrl: url,
        redisPrefix: prefix,
        localMode: true,
        pollMs: 30,
        pruneMs: 50,
        logLevel: 'silent',
        shutdownGraceMs: 60_000,
      }),
      { logger: silent },
    );
    rolloutQ = createQueue<RolloutTask>(queueName('rollout', JOB), { url, prefix });
    verifyQ = createQueue<VerifyTask>(queueName('verify', JOB), { url, prefix });
  });

  after(async () => {
    await rollout?.close();
    await learner.close();
    await rolloutQ.close();
    await verifyQ.close();
    await redis.quit();
    await rm(dir, { recursive: true, force: true });
  });

  void it('samples a shard at the task version with the learner weights, one VerifyTask per shard', async () => {
    const task = rolloutTask('1/policy/0', 0, 3, 4);
    await rolloutQ.add('rollout', task, { jobId: task.shardId });
    const vjob = await until(() => verifyQ.getJob(task.shardId), {
      timeoutMs: 120_000,
      message: `the VerifyTask of shard ${task.shardId}`,
    });
    const v = vjob.data;
    assert.equal(v.shardId, task.shardId);
    assert.equal(v.groups.length, 3);
    for (const [k, g] of v.groups.entries()) {
      assert.equal(g.groupId, `1/policy/p${k}`);
      assert.equal(g.policyVersion, 0);
      assert.deepEqual(g.promptTokens, renderPromptTokens(charTokenizer, prompt(k).text));
      assert.equal(g.responses.length, 4);
      for (const r of g.responses) {
        assert.ok(r.tokens.length >= 1 && r.tokens.length <= 12);
        assert.equal(r.logprobs.length, r.tokens.length);
        assert.equal(r.finish === 'stop', r.tokens[r.tokens.length - 1] === CHAR_EOS);
        const body = r.finish === 'stop' ? r.tokens.slice(0, -1) : r.tokens;
        assert.equal(r.text, charTokenizer.decode(body, { skipSpecial: true }));
      }
    }
    // the same request on a separately fetched copy of the learner's version 0 gives the same tokens
    const policy = await fetchPolicy(learner.address, JOB, 0, { token: null, defaultDeadlineMs: 30_000 });
    const local = await Model.create(parseHfConfig(policy.configJson), 0);
    try {
      await local.setParams(policy.params);
      const prompts = v.groups.flatMap((g) =>
        Array.from({ length: 4 }, () => Uint32Array.from(g.promptTokens)),
      );
      const outs = await local.sample({
        prompts,
        temperature: 1,
        topP: 1,
        maxNewTokens: 12,
        stopTokens: [CHAR_EOS],
        seed: groupSeed(99, task.shardId),
      });
      assert.deepEqual(
        outs.map((o) => Array.from(o.tokens)),
        v.groups.flatMap((g) => g.responses.map((r) => r.tokens)),
      );
    } finally {
      local.free();
    }
    assert.equal(rollout?.models.cached.get(JOB), 0);
    const text = await rollout?.metrics.registry.metrics();
    assert.match(text ?? '', /spark_rollout_samples_total\{phase="policy"\} 12/);
    assert.match(text ?? '', /spark_rollout_weight_fetch_bytes_total \d+/);
  });

  void it('refuses a version the learner does not hold (no samples), then samples it once published', async () => {
    const task = rolloutTask('1/policy/1', 1, 2, 2);
    await rolloutQ.add('rollout', task, {
      jobId: task.shardId,
      attempts: 100,
      backoff: { type: 'fixed', delay: 150 },
    });
    // refused at least twice while the learner is at version 0, never sampled
    await until(
      async () => {
        const j = await rolloutQ.getJob(task.shardId);
        return j && j.attemptsMade >= 2;
      },
      { timeoutMs: 60_000, message: 'two refusals of the unpublished version' },
    );
    assert.equal(await verifyQ.getJob(task.shardId), undefined, 'a refused task must not be sampled');
    const refusals = await rollout?.metrics.registry.getSingleMetricAsString(
      'spark_rollout_version_refusals_total',
    );
    assert.match(refusals ?? '', /spark_rollout_version_refusals_total\{reason="not-published"\} [1-9]/);
    assert.equal(rollout?.models.cached.get(JOB), 0);

    // the learner takes one supervised step → version 1; the retried task then samples with it
    const learnQ = createQueue<LearnTask>(queueName('learn', JOB), { url, prefix });
    try {
      const learn: LearnTask = {
        jobId: JOB,
        step: 0,
        phase: 'warmup',
        policyVersion: 0,
        groupIds: [],
        hyper,
        sft: [
          { prompt: 'What is 1 + 1?', target: 'The answer is \\boxed{2}' },
          { prompt: 'What is 2 + 2?', target: 'The answer is \\boxed{4}' },
        ],
      };
      await learnQ.add('learn', learn, { jobId: '0/warmup' });
      const vjob = await until(() => verifyQ.getJob(task.shardId), {
        timeoutMs: 120_000,
        message: `the VerifyTask of shard ${task.shardId} once version 1 is published`,
      });
      for (const g of vjob.data.groups) assert.equal(g.policyVersion, 1);
      assert.equal(rollout?.models.cached.get(JOB), 1);
    } finally {
      await learnQ.close();
    }
  });

  void it('refetches a cached version the learner now publishes with other weights (a rewound job)', async () => {
    // the learner loses the job and trains version 1 again on other data: the abandoned line's version 1
    // is still in the rollout worker's cache
    assert.equal(rollout?.models.cached.get(JOB), 1);
    const oldSha = (await redis.hget(jobKeys.policy(prefix, JOB), 'sha256')) ?? '';
    await learner.learner.dropJob(JOB);
    await redis.del(jobKeys.learned(prefix, JOB, 0, 'warmup'));
    await learner.learner.ensureJob(JOB);
    const r = await learner.learner.learn({
      jobId: JOB,
      step: 0,
      phase: 'warmup',
      policyVersion: 0,
      groupIds: [],
      hyper,
      sft: [{ prompt: 'What is 3 + 3?', target: 'The answer is \\boxed{6}' }],
    });
    assert.equal(r.policyVersion, 1);
    const newSha = (await redis.hget(jobKeys.policy(prefix, JOB), 'sha256')) ?? '';
    assert.notEqual(newSha, oldSha, 'version 1 of the new line has other weights');
    const fetched = async () =>
      Number(
        /spark_rollout_weight_fetch_bytes_total (\d+)/.exec(
          (await rollout?.metrics.registry.getSingleMetricAsString(
            'spark_rollout_weight_fetch_bytes_total',
          )) ?? '',
        )?.[1] ?? 0,
      );
    const bytesBefore = await fetched();
    const task = rolloutTask('2/policy/0', 1, 1, 2);
    await rolloutQ.add('rollout', task, { jobId: task.shardId });
    await until(() => verifyQ.getJob(task.shardId), {
      timeoutMs: 120_000,
      message: 'the VerifyTask of 2/policy/0',
    });
    assert.ok((await fetched()) > bytesBefore, 'version 1 fetched again');
    assert.equal(rollout?.models.cached.get(JOB), 1);
  });

  void it('fails poison tasks at once: a malformed payload, a prompt longer than the model context', async () => {
    const long = rolloutTask('1/policy/9', 1, 1, 2);
    const poison = { ...long, prompts: [{ ...prompt(0), text: 'x'.repeat(20_000) }] };
    await rolloutQ.add('rollout', poison, { jobId: poison.shardId, attempts: 5 });
    const bad = { jobId: JOB, shardId: '1/policy/8', prompts: 'nope' } as unknown as RolloutTask;
    await rolloutQ.add('rollout', bad, { jobId: '1/policy/8', attempts: 5 });
    for (const id of ['1/policy/9', '1/policy/8']) {
      await until(async () => (await rolloutQ.getJobState(id)) === 'failed', {
        timeoutMs: 60_000,
        message: `poison task ${id} to fail`,
      });
      const job = await rolloutQ.getJob(id);
      assert.ok(job && job.attemptsMade <= 1, `${id} was retried`);
      assert.equal(await verifyQ.getJob(id), undefined);
    }
    const failed = await rolloutQ.getJob('1/policy/9');
    assert.match(
      (failed?.stacktrace ?? []).join('\n'),
      /UnrecoverableError: prompt p0 renders to \d+ tokens/,
    );
  });

  void it('frees the model of a job that leaves the active set', async () => {
    assert.equal(rollout?.models.cached.get(JOB), 1);
    await redis.srem(jobKeys.active(prefix), JOB);
    await until(() => !rollout?.models.cached.has(JOB), {
      timeoutMs: 60_000,
      message: 'the model of the inactive job to be freed',
    });
    await redis.sadd(jobKeys.active(prefix), JOB);
  });

  void it('close() while a shard is sampling lets it finish (its VerifyTask is enqueued)', async () => {
    const task = rolloutTask('1/policy/2', 1, 6, 8, 48);
    await rolloutQ.add('rollout', task, { jobId: task.shardId });
    await until(async () => (await rolloutQ.getJobState(task.shardId)) === 'active', {
      timeoutMs: 60_000,
      intervalMs: 5,
      message: 'the large shard to be taken',
    });
    assert.ok(rollout);
    await rollout.close();
    rollout = null;
    assert.equal(await rolloutQ.getJobState(task.shardId), 'completed');
    const vjob = await verifyQ.getJob(task.shardId);
    assert.equal(vjob?.data.groups.length, 6);
  });
});
