// Learner service tests against a real Redis, a real gRPC server on 127.0.0.1:0 and the real tiny native
// model: SFT warm-up, GRPO on hand-built verified groups, exactly-once redelivery, stale and all-equal
// groups, PolicyService streaming (checksum, values, missing versions, auth), checkpoints, the lr schedule
// and the BullMQ worker path.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';

import {
  deserializePolicyResponse,
  fetchPolicy,
  float32ToLE,
  jobKeys,
  queueName,
  type LearnHyper,
  parseLearnResult,
  type LearnResult,
  type LearnTask,
  type VerifiedGroup,
} from '@spark/contract';
import { renderPromptTokens } from '@spark/method/tokenizers';
import { loadConfig } from '@spark/runtime/config';
import { grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { GetPolicyResponse, JobSpec } from '@spark/protocol';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { s3Skip, startTestS3, testPrefix, testRedisUrl, until } from '@spark/runtime/testing';
import { charTokenizer } from '@spark/method/tokenizers';
import { Model } from '@spark/kernels';

import {
  groupAdvantages,
  learnerConfigShape,
  learningRateAt,
  readTrainerState,
  scheduleFromSpec,
  serializePolicyResponse,
  startLearner,
  validateLearnTask,
  whenRedisReady,
  type LearnerService,
} from './index.js';
import { checkpointTaskMix } from './learner.js';

const silent = createLogger({
  service: 'learner-test',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});
const TOKEN = 'learner-test-token-0123456789';

const hyper: LearnHyper = {
  learningRate: 1e-2,
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  miniBatchSize: 8,
  microBatchSize: 4,
  maxGradNorm: 1,
  beta1: 0.9,
  beta2: 0.95,
  weightDecay: 0,
};

interface Env {
  url: string;
  prefix: string;
  redis: Redis;
  dir: string;
  service: LearnerService;
}

async function setup(
  name: string,
  spec: Partial<JobSpec> = {},
  extra: Record<string, unknown> = {},
  jobId = 'job-1',
  active = true,
): Promise<Env> {
  const url = await testRedisUrl();
  const prefix = testPrefix(name);
  const redis = connectRedis(url);
  await whenRedisReady(redis);
  const dir = await mkdtemp(join(tmpdir(), 'spark-learner-'));
  await writeJob(redis, prefix, jobId, { checkpointDir: join(dir, jobId), ...spec }, active);
  const config = loadConfig('learner', learnerConfigShape, {
    env: {},
    overrides: {
      redisUrl: url,
      redisPrefix: prefix,
      localMode: true,
      dataDir: dir,
      logLevel: 'silent',
      activePollMs: 50,
      ...extra,
    },
  });
  const service = await startLearner(config, { logger: silent });
  return { url, prefix, redis, dir, service };
}

/**
 * Stores a running job. `active` also puts it in the active set, so the service opens a queue worker for
 * it: only for tests of the worker path. Tests that call the learner directly leave it out, because a
 * service closed right after it opened a worker can leak that worker's "Connection is closed" rejections
 * (seen on a loaded machine, where the worker's connections were still being set up at close).
 */
async function writeJob(
  redis: Redis,
  prefix: string,
  jobId: string,
  spec: Partial<JobSpec>,
  active = true,
): Promise<void> {
  const full = JobSpec.fromPartial({ model: 'tiny', seed: 11, ...spec });
  await redis.hset(jobKeys.job(prefix, jobId), {
    spec: JSON.stringify(JobSpec.toJSON(full)),
    state: 'RUNNING',
  });
  if (active) await redis.sadd(jobKeys.active(prefix), jobId);
}

async function teardown(env: Env): Promise<void> {
  await env.service.close();
  await env.redis.quit();
  await rm(env.dir, { recursive: true, force: true });
}

const sha = (p: Float32Array) => createHash('sha256').update(float32ToLE(p)).digest('hex');

function sftTask(
  jobId: string,
  step: number,
  version: number,
  examples: { prompt: string; target: string }[],
): LearnTask {
  return { jobId, step, phase: 'warmup', policyVersion: version, groupIds: [], hyper, sft: examples };
}

const examples = [
  { prompt: 'What is 2+3?', target: 'The answer is \\boxed{5}' },
  { prompt: 'What is 7-4?', target: 'The answer is \\boxed{3}' },
  { prompt: 'What is 3*3?', target: 'The answer is \\boxed{9}' },
  { prompt: 'What is 8/2?', target: 'The answer is \\boxed{4}' },
];

/** A verified group of one prompt: responses (text) with rewards, at a policy version. */
function group(step: number, promptId: string, version: number, responses: [string, 0 | 1][]): VerifiedGroup {
  const text = `Compute ${promptId}`;
  return {
    groupId: `${step}/policy/${promptId}`,
    prompt: { promptId, kind: 'problem', text, label: '1', sourceGroupId: null, question: text, tags: [] },
    promptTokens: renderPromptTokens(charTokenizer, text),
    policyVersion: version,
    responses: responses.map(([t, reward]) => ({
      text: t,
      tokens: [...charTokenizer.encode(t), charTokenizer.eosId],
      logprobs: [],
      finish: 'stop' as const,
      reward,
      extracted: null,
      reason: 'test',
    })),
  };
}

async function storeGroups(
  env: Env,
  jobId: string,
  step: number,
  groups: VerifiedGroup[],
): Promise<string[]> {
  const key = jobKeys.groups(env.prefix, jobId, step, 'policy');
  for (const g of groups) await env.redis.hset(key, g.groupId, JSON.stringify(g));
  return groups.map((g) => g.groupId);
}

function grpoTask(
  jobId: string,
  step: number,
  version: number,
  groupIds: string[],
  h: Partial<LearnHyper> = {},
): LearnTask {
  return {
    jobId,
    step,
    phase: 'policy',
    policyVersion: version,
    groupIds,
    hyper: { ...hyper, ...h },
    sft: [],
  };
}

/** Σ log π of a response given the prompt, under a model. */
async function seqLogprob(model: Model, g: VerifiedGroup, i: number): Promise<number> {
  const r = g.responses[i];
  assert.ok(r);
  const [lp] = await model.logprobs([
    { tokens: Uint32Array.from([...g.promptTokens, ...r.tokens]), promptLen: g.promptTokens.length },
  ]);
  assert.ok(lp);
  return lp.reduce((a, b) => a + b, 0);
}

const client = { token: null, defaultDeadlineMs: 20_000 };

/** Runs `fn` against a learner of its own (own Redis prefix, data directory and job): no shared state. */
async function withLearner(name: string, fn: (env: Env) => Promise<void>): Promise<void> {
  const env = await setup(name, {}, {}, 'job-1', false);
  try {
    await fn(env);
  } finally {
    await teardown(env);
  }
}

/** A fresh job (zero AdamW moments) and one GRPO task on two groups at lr 1e-3; returns what it used. */
async function grpoStep(env: Env, jobId: string) {
  await writeJob(env.redis, env.prefix, jobId, { checkpointDir: join(env.dir, jobId) }, false);
  const state = await env.service.learner.ensureJob(jobId);
  const v = state.version;
  const g1 = group(1, 'a', v, [
    ['5', 1],
    ['xyz', 0],
    ['5', 1],
    ['qq', 0],
  ]);
  const g2 = group(1, 'b', v, [
    ['9', 1],
    ['abc', 0],
    ['ww', 0],
    ['k', 0],
  ]);
  const ids = await storeGroups(env, jobId, 1, [g1, g2]);
  const task = grpoTask(jobId, 1, v, ids, { learningRate: 1e-3 });
  return { state, v, g1, g2, ids, task };
}

// Every test here starts its own learner on its own prefix, so each passes alone and in any order.
describe('learner: updates', () => {
  it('publishes version 0 as soon as the job is loaded', () =>
    withLearner('learner-v0', async (env) => {
      const state = await env.service.learner.ensureJob('job-1');
      assert.equal(state.version, 0);
      const policy = await env.redis.hgetall(jobKeys.policy(env.prefix, 'job-1'));
      assert.equal(policy.version, '0');
      assert.equal(policy.learnerAddress, env.service.address);
      assert.equal(policy.sha256, sha(await state.model.getParams()));
      assert.equal(Number(policy.bytes), state.model.numParams * 4);
    }));

  it('warm-up tasks run SFT and lower the loss', () =>
    withLearner('learner-sft', async (env) => {
      const state = await env.service.learner.ensureJob('job-1');
      assert.equal(state.version, 0);
      const losses: number[] = [];
      for (let step = 0; step < 6; step++) {
        const r = await env.service.learner.learn(sftTask('job-1', step, state.version, examples));
        losses.push(r.loss);
        assert.equal(r.policyVersion, step + 1);
        assert.equal(r.sequences, 4);
        assert.ok(r.optimizerSteps === 1, 'minibatch 8 > 4 examples: one optimizer step');
        assert.ok(r.tokens > 0);
      }
      assert.equal(state.version, 6);
      assert.ok(
        (losses.at(-1) as number) < (losses[0] as number) * 0.8,
        `SFT loss should fall: ${losses.map((l) => l.toFixed(3)).join(' → ')}`,
      );
      assert.equal(state.reference, null, 'no reference before RL');
    }));

  it('a GRPO task raises the log-prob of rewarded responses and bumps the version', () =>
    withLearner('learner-grpo', async (env) => {
      // a fresh job: zero AdamW moments, so the step follows this task's gradient alone
      const { state, v, g1, g2, task } = await grpoStep(env, 'job-g');
      // J = Σ A·log π over the batch: what one GRPO step at ratio 1 ascends
      const objective = async () => {
        let j = 0;
        for (const g of [g1, g2]) {
          const adv = groupAdvantages(g.responses.map((r) => r.reward));
          for (let i = 0; i < g.responses.length; i++)
            j += (adv[i] ?? 0) * (await seqLogprob(state.model, g, i));
        }
        return j;
      };
      const before = [
        await seqLogprob(state.model, g1, 0),
        await seqLogprob(state.model, g1, 1),
        await seqLogprob(state.model, g2, 0),
      ];
      const j0 = await objective();
      const r = await env.service.learner.learn(task);
      const after = [
        await seqLogprob(state.model, g1, 0),
        await seqLogprob(state.model, g1, 1),
        await seqLogprob(state.model, g2, 0),
      ];
      const j1 = await objective();
      assert.equal(r.policyVersion, v + 1);
      assert.equal(r.sequences, 8);
      assert.equal(r.staleGroups, 0);
      assert.equal(r.optimizerSteps, 1);
      assert.ok(j1 > j0, `advantage-weighted log-prob should rise: ${j0} → ${j1}`);
      assert.ok(after[0]! > before[0]!, `rewarded response: ${before[0]} → ${after[0]}`);
      assert.ok(after[1]! < before[1]!, `unrewarded response: ${before[1]} → ${after[1]}`);
      assert.ok(after[2]! > before[2]!, `rewarded response of group b: ${before[2]} → ${after[2]}`);
      assert.ok(state.reference, 'the reference was frozen when RL started');
      const policy = await env.redis.hgetall(jobKeys.policy(env.prefix, 'job-g'));
      assert.equal(policy.version, String(v + 1));
      assert.equal(policy.sha256, sha(await state.model.getParams()));
      const stored = parseLearnResult(
        JSON.parse((await env.redis.get(jobKeys.learned(env.prefix, 'job-g', 1, 'policy'))) ?? 'null'),
      );
      assert.deepEqual(stored, r);
    }));

  it('a redelivered LearnTask returns the stored result without training', () =>
    withLearner('learner-redeliver', async (env) => {
      // the first delivery, trained
      const { state, task } = await grpoStep(env, 'job-g');
      await env.service.learner.learn(task);
      const paramsBefore = sha(await state.model.getParams());
      const versionBefore = state.version;
      const stored = parseLearnResult(
        JSON.parse((await env.redis.get(jobKeys.learned(env.prefix, 'job-g', 1, 'policy'))) ?? 'null'),
      );
      assert.ok(stored, 'the first delivery stored its result');
      // the task as it was first delivered (sampled at version versionBefore - 1)
      assert.equal(task.policyVersion, versionBefore - 1);
      const again = await env.service.learner.learn(task);
      assert.deepEqual(again, stored);
      assert.equal(state.version, versionBefore);
      assert.equal(sha(await state.model.getParams()), paramsBefore, 'parameters unchanged');
      // the stored result lost (e.g. Redis failed after training): the learner still answers from memory
      await env.redis.del(jobKeys.learned(env.prefix, 'job-g', 1, 'policy'));
      const third = await env.service.learner.learn(task);
      assert.deepEqual(third, stored);
      assert.equal(sha(await state.model.getParams()), paramsBefore, 'parameters unchanged');
      assert.equal(
        await env.redis.get(jobKeys.learned(env.prefix, 'job-g', 1, 'policy')),
        JSON.stringify(stored),
      );
    }));

  it('refuses groups sampled with another policy version and gives all-equal groups zero advantage', () =>
    withLearner('learner-stale', async (env) => {
      // a fresh job (zero AdamW moments): a zero gradient must then leave every weight where it is
      await writeJob(env.redis, env.prefix, 'job-e', { checkpointDir: join(env.dir, 'job-e') }, false);
      const state = await env.service.learner.ensureJob('job-e');
      const v = state.version;
      const stale = group(2, 's', v + 1, [
        ['\\boxed{1}', 1],
        ['\\boxed{2}', 0],
      ]);
      const equal = group(2, 'e', v, [
        ['\\boxed{1}', 1],
        ['\\boxed{1}', 1],
        ['\\boxed{1}', 1],
      ]);
      const ids = await storeGroups(env, 'job-e', 2, [stale, equal]);
      const before = await state.model.getParams();
      // klCoef 0: with every advantage 0 the loss has zero gradient, so AdamW must leave the weights alone
      const r = await env.service.learner.learn(grpoTask('job-e', 2, v, ids, { klCoefficient: 0 }));
      assert.equal(r.staleGroups, 1);
      assert.equal(r.sequences, 3, 'the all-equal group stays in the batch; the stale one is dropped');
      assert.equal(r.policyVersion, v + 1);
      assert.ok(Math.abs(r.loss) < 1e-6, `zero advantage → zero policy loss, got ${r.loss}`);
      const afterP = await state.model.getParams();
      let maxDiff = 0;
      for (let i = 0; i < before.length; i++) maxDiff = Math.max(maxDiff, Math.abs(before[i]! - afterP[i]!));
      assert.ok(maxDiff < 1e-7, `parameters moved by ${maxDiff}`);
    }));

  it('a task at the wrong policy version fails clearly and trains nothing', () =>
    withLearner('learner-wrong-version', async (env) => {
      const state = await env.service.learner.ensureJob('job-1');
      await env.service.learner.learn(sftTask('job-1', 0, 0, examples));
      const p = sha(await state.model.getParams());
      const v = state.version;
      await assert.rejects(
        env.service.learner.learn(sftTask('job-1', 50, state.version + 3, examples)),
        /sampled with policy version/,
      );
      assert.equal(state.version, v);
      assert.equal(sha(await state.model.getParams()), p);
    }));

  it('a missing group fails the task (retryable) and leaves the model as it was', () =>
    withLearner('learner-missing', async (env) => {
      const state = await env.service.learner.ensureJob('job-1');
      const p = sha(await state.model.getParams());
      const v = state.version;
      await assert.rejects(
        env.service.learner.learn(grpoTask('job-1', 3, v, ['3/policy/nope'])),
        /not verified yet/,
      );
      assert.equal(state.version, v);
      assert.equal(sha(await state.model.getParams()), p);
      assert.equal(await env.redis.get(jobKeys.learned(env.prefix, 'job-1', 3, 'policy')), null);
    }));

  it('a failed checkpoint undoes the whole update (weights, optimizer, version, policy hash)', () =>
    withLearner('learner-ckpt-fail', async (env) => {
      // the checkpoint dir sits under a regular file, so writing it fails (ENOTDIR)
      const blocker = join(env.dir, 'blocker');
      await writeFile(blocker, 'x');
      await writeJob(env.redis, env.prefix, 'job-f', { checkpointDir: join(blocker, 'ckpt') }, false);
      const state = await env.service.learner.ensureJob('job-f');
      const p0 = sha(await state.model.getParams());
      await assert.rejects(env.service.learner.learn({ ...sftTask('job-f', 0, 0, examples), final: true }));
      assert.equal(state.version, 0);
      assert.equal(state.optimizerSteps, 0);
      assert.equal(sha(await state.model.getParams()), p0);
      assert.equal((await state.model.getOptimizerState()).step, 0);
      assert.equal(await env.redis.get(jobKeys.learned(env.prefix, 'job-f', 0, 'warmup')), null);
      assert.equal(await env.redis.hget(jobKeys.policy(env.prefix, 'job-f'), 'version'), '0');
      // the retry (without the failing checkpoint) trains exactly once from the same point
      const r = await env.service.learner.learn(sftTask('job-f', 0, 0, examples));
      assert.equal(r.policyVersion, 1);
      assert.equal(r.optimizerSteps, 1);
    }));

  it('GetPolicy streams the held versions; older versions are FAILED_PRECONDITION, unknown jobs NOT_FOUND', () =>
    withLearner('learner-getpolicy', async (env) => {
      const state = await env.service.learner.ensureJob('job-1');
      // two updates: versions 1 and 2 are held (keepVersions 2), version 0 no longer is
      for (let step = 0; step < 2; step++)
        await env.service.learner.learn(sftTask('job-1', step, state.version, examples));
      const v = state.version;
      assert.equal(v, 2);
      const got = await fetchPolicy(env.service.address, 'job-1', v, client);
      const params = await state.model.getParams();
      assert.equal(got.version, v);
      assert.equal(got.params.length, params.length);
      assert.deepEqual(got.params, params);
      assert.equal(got.sha256, sha(params));
      assert.equal(got.config.vocab_size, 128);
      const prev = await fetchPolicy(env.service.address, 'job-1', v - 1, client);
      assert.equal(prev.version, v - 1);
      assert.notEqual(prev.sha256, got.sha256);
      await assert.rejects(fetchPolicy(env.service.address, 'job-1', 0, client), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
        return true;
      });
      await assert.rejects(
        fetchPolicy(env.service.address, 'job-1', v + 1, client),
        (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
          return true;
        },
      );
      await assert.rejects(
        fetchPolicy(env.service.address, 'no-such-job', 0, client),
        (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.NOT_FOUND);
          return true;
        },
      );
    }));

  it('exposes the spark_learner_* metrics', () =>
    withLearner('learner-metrics', async (env) => {
      // one warm-up update, one policy update with a stale group, one replayed delivery, two models
      const state = await env.service.learner.ensureJob('job-1');
      await env.service.learner.learn(sftTask('job-1', 0, 0, examples));
      const v = state.version;
      const ids = await storeGroups(env, 'job-1', 1, [
        group(1, 's', v + 1, [
          ['\\boxed{1}', 1],
          ['\\boxed{2}', 0],
        ]),
        group(1, 'a', v, [
          ['\\boxed{1}', 1],
          ['\\boxed{2}', 0],
        ]),
      ]);
      const task = grpoTask('job-1', 1, v, ids);
      await env.service.learner.learn(task);
      await env.service.learner.learn(task); // redelivered: answered from the stored result
      await writeJob(env.redis, env.prefix, 'job-2', { checkpointDir: join(env.dir, 'job-2') }, false);
      await env.service.learner.ensureJob('job-2');
      await fetchPolicy(env.service.address, 'job-1', state.version, client);
      const text = await env.service.serviceMetrics.registry.metrics();
      for (const name of [
        'spark_learner_updates_total{phase="warmup"} 1',
        'spark_learner_updates_total{phase="policy"} 1',
        'spark_learner_loaded_models 2',
        'spark_learner_stale_groups_total 1',
        'spark_learner_replayed_updates_total 1',
      ]) {
        assert.ok(text.includes(name), `missing ${name}`);
      }
      assert.match(text, /spark_learner_policy_version \d+/);
      // counted by the server as the stream ends, which may be just after the client has it all
      await until(
        async () =>
          /spark_learner_weight_bytes_sent_total [1-9]/.test(
            await env.service.serviceMetrics.registry.metrics(),
          ),
        { message: 'the streamed weights in spark_learner_weight_bytes_sent_total' },
      );
    }));
});

describe('learner: checkpoints, auth and the worker path', () => {
  it('writes a loadable checkpoint on a final task and a restarted learner resumes from it', async () => {
    const env = await setup('learner-ckpt', { checkpointInterval: 0 });
    try {
      const state = await env.service.learner.ensureJob('job-1');
      await env.service.learner.learn(sftTask('job-1', 0, 0, examples));
      const ids = await storeGroups(env, 'job-1', 1, [
        group(1, 'a', 1, [
          ['\\boxed{1}', 1],
          ['\\boxed{2}', 0],
        ]),
      ]);
      const finalTask = { ...grpoTask('job-1', 1, 1, ids), final: true, totalOptimizerSteps: 10 };
      const r = await env.service.learner.learn(finalTask);
      assert.ok(r.checkpointPath, 'final task reports its checkpoint');
      assert.equal(r.checkpointPath, join(env.dir, 'job-1', 'step-1'));
      // RL started with a fresh AdamW: its step count restarted, not carried over from the warm-up
      assert.equal((await state.model.getOptimizerState()).step, 1, 'one RL optimizer step since RL began');
      const trainer = await readTrainerState(r.checkpointPath);
      assert.equal(trainer.jobId, 'job-1');
      assert.equal(trainer.policyVersion, 2);
      assert.equal(trainer.rlOptimizerSteps, 1);
      assert.equal(trainer.optimizerSteps, 2);
      const loaded = await Model.load(r.checkpointPath, { optimizer: true });
      assert.deepEqual(await loaded.getParams(), await state.model.getParams());
      assert.equal((await loaded.getOptimizerState()).step, 1, 'the optimizer state as saved');
      loaded.free();
      const files = JSON.parse(await readFile(join(r.checkpointPath, 'config.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      assert.equal(files.vocab_size, 128);
      const finalSha = sha(await state.model.getParams());
      await env.service.close();

      // a fresh learner process on the same job resumes at the checkpoint's version
      const config = loadConfig('learner', learnerConfigShape, {
        env: {},
        overrides: {
          redisUrl: env.url,
          redisPrefix: env.prefix,
          localMode: true,
          dataDir: env.dir,
          logLevel: 'silent',
        },
      });
      env.service = await startLearner(config, { logger: silent });
      const resumed = await env.service.learner.ensureJob('job-1');
      assert.equal(resumed.version, 2);
      assert.equal(resumed.rlOptimizerSteps, 1);
      assert.ok(resumed.reference, 'reference restored');
      assert.equal(sha(await resumed.model.getParams()), finalSha);

      // the learner died after writing the checkpoint but before the result reached Redis: the task comes
      // again (sampled at version 1, the learner is at 2) and is answered from the checkpoint, not refused
      // as stale and not trained again
      const learned = jobKeys.learned(env.prefix, 'job-1', 1, 'policy');
      await env.redis.del(learned);
      const again = await env.service.learner.learn(finalTask);
      const { seconds: _s1, ...want } = r;
      const { seconds: _s2, ...got } = again;
      assert.deepEqual(got, want);
      assert.equal(resumed.version, 2);
      assert.equal(sha(await resumed.model.getParams()), finalSha, 'nothing trained again');
      assert.deepEqual(parseLearnResult(JSON.parse((await env.redis.get(learned)) ?? 'null')), again);

      // another job whose model spec is the checkpoint directory starts from those weights at version 0
      await writeJob(env.redis, env.prefix, 'job-2', {
        model: r.checkpointPath,
        checkpointDir: join(env.dir, 'job-2'),
      });
      const fromCkpt = await env.service.learner.ensureJob('job-2');
      assert.equal(fromCkpt.version, 0);
      assert.equal(sha(await fromCkpt.model.getParams()), finalSha);
    } finally {
      await teardown(env);
    }
  });

  it('checkpoints at step ends only (none after a midStep policy update) and records where each load resumed', async () => {
    const env = await setup('learner-midstep', { checkpointInterval: 2 }, {}, 'job-1', false);
    const resumed = async () =>
      JSON.parse((await env.redis.get(jobKeys.resumed(env.prefix, 'job-1'))) ?? '{}') as Record<
        string,
        unknown
      >;
    try {
      await env.service.learner.ensureJob('job-1');
      assert.deepEqual(
        { ...(await resumed()), at: '' },
        { version: 0, step: 0, phase: 'start', dir: '', at: '' },
      );
      const ids = await storeGroups(env, 'job-1', 2, [
        group(2, 'a', 0, [
          ['\\boxed{1}', 1],
          ['\\boxed{2}', 0],
        ]),
      ]);
      const rp = await env.service.learner.learn({ ...grpoTask('job-1', 2, 0, ids), midStep: true });
      assert.equal(rp.checkpointPath, undefined, 'a reward phase follows: no checkpoint mid-step');
      const g = group(2, 'b', 1, [
        ['\\boxed{3}', 0],
        ['\\boxed{4}', 1],
      ]);
      await env.redis.hset(jobKeys.groups(env.prefix, 'job-1', 2, 'reward'), g.groupId, JSON.stringify(g));
      const rr = await env.service.learner.learn({
        ...grpoTask('job-1', 2, 1, [g.groupId]),
        phase: 'reward',
      });
      assert.equal(rr.checkpointPath, join(env.dir, 'job-1', 'step-2'));
      await env.service.close();
      const config = loadConfig('learner', learnerConfigShape, {
        env: {},
        overrides: {
          redisUrl: env.url,
          redisPrefix: env.prefix,
          localMode: true,
          dataDir: env.dir,
          logLevel: 'silent',
        },
      });
      env.service = await startLearner(config, { logger: silent });
      await env.service.learner.ensureJob('job-1');
      const r = await resumed();
      assert.equal(r.version, 2);
      assert.equal(r.step, 2);
      assert.equal(r.phase, 'reward');
      assert.equal(r.dir, join(env.dir, 'job-1', 'step-2'));
    } finally {
      await teardown(env);
    }
  });

  it('requires the bearer token on GetPolicy when one is configured', async () => {
    const env = await setup('learner-auth', {}, { localMode: false, authToken: TOKEN });
    try {
      await env.service.learner.ensureJob('job-1');
      await assert.rejects(fetchPolicy(env.service.address, 'job-1', 0, client), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.UNAUTHENTICATED);
        return true;
      });
      await assert.rejects(
        fetchPolicy(env.service.address, 'job-1', 0, { ...client, token: 'wrong-token-0123456789' }),
        (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED,
      );
      const ok = await fetchPolicy(env.service.address, 'job-1', 0, { ...client, token: TOKEN });
      assert.equal(ok.version, 0);
    } finally {
      await teardown(env);
    }
  });

  it('serves the weight stream to the service role only (per-user tokens file)', async () => {
    const tokensFile = join(await mkdtemp(join(tmpdir(), 'spark-learner-tokens-')), 'tokens.yaml');
    const svc = 'rollout-service-token-0123456789';
    const researcher = 'researcher-token-0123456789';
    await writeFile(
      tokensFile,
      [
        'principals:',
        `  - { name: rollout, roles: [service], tokens: ["${svc}"] }`,
        `  - { name: alice, roles: [researcher, operator], tokens: ["${researcher}"] }`,
        '',
      ].join('\n'),
    );
    const env = await setup('learner-roles', {}, { localMode: false, authTokensFile: tokensFile });
    try {
      await env.service.learner.ensureJob('job-1');
      await assert.rejects(
        fetchPolicy(env.service.address, 'job-1', 0, { ...client, token: researcher }),
        (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.PERMISSION_DENIED);
          assert.match(
            err.details,
            /PolicyService\/GetPolicy needs role service; alice has researcher, operator/,
          );
          return true;
        },
      );
      const ok = await fetchPolicy(env.service.address, 'job-1', 0, { ...client, token: svc });
      assert.equal(ok.version, 0);
    } finally {
      await teardown(env);
    }
  });

  it("writes the `warmup` checkpoint on the final warm-up task, loadable as a new job's model", async () => {
    const env = await setup(
      'learner-warmup-ckpt',
      { checkpointInterval: 0, dataset: 'builtin', taskFamilies: ['add', 'remainder'], taskMaxDifficulty: 1 },
      {},
      'job-w',
    );
    try {
      await env.service.learner.ensureJob('job-w');
      const r0 = await env.service.learner.learn(sftTask('job-w', 0, 0, examples));
      assert.equal(r0.checkpointPath, undefined, 'no checkpoint before the last warm-up step');
      const r1 = await env.service.learner.learn({ ...sftTask('job-w', 1, 1, examples), final: true });
      assert.equal(r1.checkpointPath, join(env.dir, 'job-w', 'warmup'));
      const trainer = await readTrainerState(join(env.dir, 'job-w', 'warmup'));
      assert.equal(trainer.phase, 'warmup');
      assert.equal(trainer.policyVersion, 2);
      // the task mix the job trained on, which `spark eval` defaults to
      assert.deepEqual(trainer.taskMix, {
        dataset: 'builtin',
        families: ['add', 'remainder'],
        difficulties: [1],
      });
      const latest = JSON.parse(await readFile(join(env.dir, 'job-w', 'latest.json'), 'utf8')) as {
        dir: string;
      };
      assert.equal(latest.dir, 'warmup');
      const loaded = await Model.load(join(env.dir, 'job-w', 'warmup'));
      const state = await env.service.learner.ensureJob('job-w');
      assert.deepEqual(await loaded.getParams(), await state.model.getParams());
      loaded.free();
    } finally {
      await teardown(env);
    }
  });

  it('a checkpoint task writes the current weights without training, once', async () => {
    const env = await setup('learner-ckpt-only', { checkpointInterval: 0 }, {}, 'job-c');
    try {
      const state = await env.service.learner.ensureJob('job-c');
      await env.service.learner.learn(sftTask('job-c', 0, 0, examples));
      const params = await state.model.getParams();
      const task = { ...sftTask('job-c', 3, 1, []), phase: 'checkpoint' as const, final: true };
      const r = await env.service.learner.learn(task);
      assert.equal(r.checkpointPath, join(env.dir, 'job-c', 'step-3'));
      assert.equal(r.policyVersion, 1, 'no version bump');
      assert.equal(r.optimizerSteps, 0);
      assert.equal(state.version, 1);
      assert.deepEqual(await state.model.getParams(), params, 'weights unchanged');
      const loaded = await Model.load(join(env.dir, 'job-c', 'step-3'));
      assert.deepEqual(await loaded.getParams(), params);
      loaded.free();
      assert.deepEqual(
        await env.service.learner.learn(task),
        r,
        'a redelivered task returns the same result',
      );
      assert.throws(
        () => validateLearnTask({ ...task, phase: 'nap' }, 'job-c', 10),
        /invalid LearnTask: phase: /,
      );
      assert.throws(() => validateLearnTask(task, 'job-d', 10), /jobId job-c is not the queue's job job-d/);
    } finally {
      await teardown(env);
    }
  });

  it('serves LearnTasks from the job queue and writes checkpoints at the interval', async () => {
    const env = await setup('learner-queue', { checkpointInterval: 2 });
    const queue = createQueue<LearnTask>(queueName('learn', 'job-1'), { url: env.url, prefix: env.prefix });
    try {
      await queue.waitUntilReady();
      const wait = async (step: number, phase: string): Promise<LearnResult> => {
        const key = jobKeys.learned(env.prefix, 'job-1', step, phase);
        const raw = await until(() => env.redis.get(key), {
          timeoutMs: 120_000,
          intervalMs: 50,
          message: `the stored result of ${step}/${phase}`,
        });
        return parseLearnResult(JSON.parse(raw));
      };
      await queue.add('learn', sftTask('job-1', 0, 0, examples), { jobId: '0/warmup' });
      const r0 = await wait(0, 'warmup');
      assert.equal(r0.policyVersion, 1);
      const ids = await storeGroups(env, 'job-1', 2, [
        group(2, 'a', 1, [
          ['\\boxed{1}', 1],
          ['\\boxed{2}', 0],
        ]),
      ]);
      await queue.add('learn', grpoTask('job-1', 2, 1, ids), { jobId: '2/policy' });
      const r2 = await wait(2, 'policy');
      assert.equal(r2.policyVersion, 2);
      assert.equal(r2.checkpointPath, join(env.dir, 'job-1', 'step-2'));
      // malformed task: refused without retries
      await queue.add(
        'learn',
        { ...sftTask('job-1', 3, 2, examples), hyper: { ...hyper, miniBatchSize: 0 } },
        {
          jobId: '3/warmup',
          attempts: 3,
        },
      );
      await until(async () => (await queue.getJobState('3/warmup')) === 'failed', {
        timeoutMs: 60_000,
        intervalMs: 50,
        message: 'the malformed task to fail',
      });
      const job = await queue.getJob('3/warmup');
      assert.ok(job);
      assert.match(job.failedReason, /miniBatchSize/);
      assert.equal(job.attemptsMade, 1);
    } finally {
      await queue.close();
      await teardown(env);
    }
  });
});

describe('learner: pure parts', () => {
  it('records the task mix of the built-in tasks resolved, and of a file as the file alone', () => {
    assert.deepEqual(checkpointTaskMix({ dataset: 'builtin', taskFamilies: [], taskMaxDifficulty: 0 }), {
      dataset: 'builtin',
      families: ['add', 'sub', 'mul', 'expr', 'linear', 'compare', 'remainder'],
      difficulties: [1, 2],
    });
    assert.deepEqual(checkpointTaskMix({ dataset: '', taskFamilies: ['mul'], taskMaxDifficulty: 3 }), {
      dataset: 'builtin',
      families: ['mul'],
      difficulties: [1, 2, 3],
    });
    assert.deepEqual(
      checkpointTaskMix({ dataset: '/d/gsm8k.jsonl', taskFamilies: [], taskMaxDifficulty: 0 }),
      {
        dataset: '/d/gsm8k.jsonl',
        families: [],
        difficulties: [],
      },
    );
  });

  it('the hand-framed chunk encoding equals the generated protobuf encoding both ways', () => {
    for (const n of [0, 1, 127, 128, 300, 16_384, 1 << 20, (1 << 20) + 3]) {
      const data = Buffer.alloc(n, 0xab);
      const msg: GetPolicyResponse = { part: { $case: 'chunk', value: data } };
      const mine = serializePolicyResponse(msg);
      assert.deepEqual(mine, Buffer.from(GetPolicyResponse.encode(msg).finish()), `encode, ${n} bytes`);
      assert.deepEqual(deserializePolicyResponse(mine), GetPolicyResponse.decode(mine), `decode, ${n} bytes`);
    }
    const header: GetPolicyResponse = {
      part: {
        $case: 'header',
        value: {
          jobId: 'j',
          version: 3,
          configJson: '{}',
          totalBytes: 1 << 22,
          sha256: 'ab',
          chunkBytes: 1 << 20,
        },
      },
    };
    const enc = serializePolicyResponse(header);
    assert.deepEqual(enc, Buffer.from(GetPolicyResponse.encode(header).finish()));
    assert.deepEqual(deserializePolicyResponse(enc), header);
  });

  it('group advantages: sample std with N−1, zero for all-equal groups', () => {
    const a = groupAdvantages([1, 0, 1, 0]);
    // mean 0.5, std_{N-1} = sqrt(1/3)
    const s = Math.sqrt(1 / 3);
    assert.deepEqual(
      a.map((x) => x.toFixed(6)),
      [0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s].map((x) => x.toFixed(6)),
    );
    assert.deepEqual(groupAdvantages([1, 1, 1]), [0, 0, 0]);
    assert.deepEqual(groupAdvantages([0, 0]), [0, 0]);
    assert.deepEqual(groupAdvantages([1]), [0]);
  });

  it('lr schedule: linear warm-up, cosine to min_lr_ratio × lr, constant option', () => {
    const cos = scheduleFromSpec({ lrSchedule: '', lrWarmupRatio: 0.1, minLrRatio: 0.1 });
    assert.equal(cos.kind, 'cosine');
    const lr = (s: number) => learningRateAt(cos, 1, s, 100);
    assert.ok(Math.abs(lr(0) - 0.1) < 1e-12, 'warm-up step 1 of 10');
    assert.ok(Math.abs(lr(9) - 1) < 1e-12, 'end of warm-up');
    assert.ok(Math.abs(lr(10) - 1) < 1e-12, 'cosine starts at the peak');
    assert.ok(Math.abs(lr(55) - 0.55) < 1e-12, 'halfway: (1 + 0.1) / 2');
    assert.ok(Math.abs(lr(100) - 0.1) < 1e-12, 'floor at the end');
    assert.ok(Math.abs(lr(500) - 0.1) < 1e-12, 'stays at the floor past the horizon');
    const defaults = scheduleFromSpec({ lrSchedule: 'cosine', lrWarmupRatio: 0, minLrRatio: 0 });
    assert.deepEqual(defaults, { kind: 'cosine', warmupRatio: 0.03, minLrRatio: 0.1 });
    const constant = scheduleFromSpec({ lrSchedule: 'constant', lrWarmupRatio: 0, minLrRatio: 0 });
    assert.equal(learningRateAt(constant, 5e-4, 77, 100), 5e-4);
    assert.equal(learningRateAt(cos, 5e-4, 3, null), 5e-4, 'unknown horizon → constant');
    assert.throws(
      () => scheduleFromSpec({ lrSchedule: 'linear', lrWarmupRatio: 0, minLrRatio: 0 }),
      /cosine/,
    );
  });
});

describe('learner: checkpoints published to an object store', { skip: s3Skip() }, () => {
  it('uploads every checkpoint under checkpoints/<jobId>/<dir>/, latest.json last, and resumes from it (real S3 server)', async () => {
    const s3 = await startTestS3();
    const storeConfig = {
      storeEndpoint: s3.endpoint,
      storeBucket: s3.bucket,
      storeAccessKeyId: s3.accessKeyId,
      storeSecretAccessKey: s3.secretAccessKey,
    };
    const env = await setup('learner-store', { checkpointInterval: 0 }, storeConfig);
    const store = s3.openStore('');
    try {
      const job = await env.service.learner.ensureJob('job-1');
      const dir = await env.service.learner.checkpoint(job, { step: 0, phase: 'warmup' });
      assert.equal(dir, join(env.dir, 'job-1', 'warmup'));
      const keys = await store.list('checkpoints/job-1/', 100);
      for (const f of ['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json'])
        assert.ok(keys.includes(`checkpoints/job-1/warmup/${f}`), `${f} in ${keys.join(', ')}`);
      assert.ok(keys.includes('checkpoints/job-1/latest.json'));
      const pointer: unknown = JSON.parse(
        (await store.getBytes('checkpoints/job-1/latest.json', 4096))?.toString() ?? '',
      );
      assert.deepEqual(pointer, { dir: 'warmup', step: 0 });
      const weights = await store.getBytes('checkpoints/job-1/warmup/model.safetensors', 1 << 30);
      assert.ok(weights?.equals(await readFile(join(dir, 'model.safetensors'))), 'the same weights');

      // a step checkpoint, then the volume is lost: a fresh learner resumes the job from the store
      job.version = 7;
      await env.service.learner.checkpoint(job, { step: 3, phase: 'checkpoint' });
      const params = sha(await job.model.getParams());
      await env.service.close();
      await rm(join(env.dir, 'job-1'), { recursive: true, force: true });
      const config = loadConfig('learner', learnerConfigShape, {
        env: {},
        overrides: {
          redisUrl: env.url,
          redisPrefix: env.prefix,
          localMode: true,
          dataDir: env.dir,
          logLevel: 'silent',
          ...storeConfig,
        },
      });
      env.service = await startLearner(config, { logger: silent });
      const resumed = await env.service.learner.ensureJob('job-1');
      assert.equal(resumed.version, 7, 'resumed at the stored checkpoint');
      assert.equal(sha(await resumed.model.getParams()), params);
      assert.deepEqual(JSON.parse(await readFile(join(env.dir, 'job-1', 'latest.json'), 'utf8')), {
        dir: 'step-3',
        step: 3,
      });
    } finally {
      store.close();
      await teardown(env);
      await s3.stop();
    }
  });
});
