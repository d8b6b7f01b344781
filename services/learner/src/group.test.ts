// The learner group with real processes: the leader in this process (its Learner driven directly or through
// its BullMQ learn queue), each follower a child `main.ts` process, Gloo collectives over TCP, rendezvous in
// a real Redis. Two ranks train the same tasks as one learner to the same losses and parameters (with and
// without ZeRO-1); a follower SIGKILLed mid-step leaves no update applied, and the task completes once the
// rank is back, under a new generation of the group.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';

import {
  jobKeys,
  parseLearnResult,
  queueName,
  type LearnHyper,
  type LearnResult,
  type LearnTask,
  type VerifiedGroup,
} from '@spark/contract';
import { charTokenizer, renderPromptTokens } from '@spark/method/tokenizers';
import { loadConfig } from '@spark/runtime/config';
import { checkHealth } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { JobSpec } from '@spark/protocol';
import { connectRedis, createQueue, defaultJobOptions, type Redis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl, until } from '@spark/runtime/testing';

import { groupKey } from './group.js';
import { learnerConfigShape, startLearner, whenRedisReady, type LearnerService } from './index.js';

const here = dirname(fileURLToPath(import.meta.url));
const silent = createLogger({
  service: 'learner-group-test',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});
const JOB = 'job-dp';
const TIMEOUT_MS = 8_000;

const hyper: LearnHyper = {
  learningRate: 1e-2,
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  miniBatchSize: 8,
  microBatchSize: 2,
  maxGradNorm: 1,
  beta1: 0.9,
  beta2: 0.95,
  weightDecay: 0.01,
};

interface Side {
  prefix: string;
  dir: string;
  service: LearnerService;
}

async function writeJob(redis: Redis, prefix: string, dir: string, active: boolean): Promise<void> {
  const spec = JobSpec.fromPartial({
    model: 'tiny',
    seed: 5,
    checkpointDir: join(dir, JOB),
    checkpointInterval: 0,
  });
  await redis.hset(jobKeys.job(prefix, JOB), {
    spec: JSON.stringify(JobSpec.toJSON(spec)),
    state: 'RUNNING',
  });
  if (active) await redis.sadd(jobKeys.active(prefix), JOB);
}

async function startSide(
  url: string,
  redis: Redis,
  name: string,
  extra: Record<string, unknown>,
  active: boolean,
): Promise<Side> {
  const prefix = testPrefix(name);
  const dir = await mkdtemp(join(tmpdir(), 'spark-learner-dp-'));
  await writeJob(redis, prefix, dir, active);
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
  return { prefix, dir, service: await startLearner(config, { logger: silent }) };
}

/** A follower rank as its own process (main.ts), up once it printed READY. */
async function spawnFollower(
  url: string,
  prefix: string,
  rank: number,
  ranks: number,
  extra: Record<string, string> = {},
): Promise<ChildProcess & { metricsPort: number; grpcPort: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'main.ts')], {
    cwd: join(here, '..'),
    env: {
      ...process.env,
      SPARK_REDIS_URL: url,
      SPARK_REDIS_PREFIX: prefix,
      SPARK_LOCAL_MODE: '1',
      SPARK_DATA_DIR: join(tmpdir(), `spark-follower-${process.pid}-${rank}`),
      SPARK_LOG_LEVEL: 'warn',
      SPARK_LEARNER_RANKS: String(ranks),
      SPARK_LEARNER_RANK: String(rank),
      SPARK_COLLECTIVE_HOST: '127.0.0.1',
      SPARK_COLLECTIVE_TIMEOUT_MS: String(TIMEOUT_MS),
      SPARK_ACTIVE_POLL_MS: '50',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = await new Promise<{ metricsPort: number; grpcPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('follower: no READY line within 60 s')), 60_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(6)) as { metricsPort: number; grpcPort: number });
    });
    child.once('exit', (code) => reject(new Error(`follower exited with ${code} before READY`)));
  });
  return Object.assign(child, { metricsPort: ready.metricsPort, grpcPort: ready.grpcPort });
}

/** One unlabelled sample of a process's /metrics. */
async function metric(port: number, name: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** Groups of varied lengths (so the token-balanced split is uneven), sampled at `version`. */
function groups(step: number, version: number, count = 3): VerifiedGroup[] {
  const answers = ['5', 'seven', '12', 'no idea at all', '3', 'forty-two', 'x', 'the answer is 9'];
  return Array.from({ length: count }, (_, g) => {
    const text = `Compute ${step}-${g}: ${'+1'.repeat(g + 1)}`;
    return {
      groupId: `${step}/policy/p${g}`,
      prompt: {
        promptId: `p${g}`,
        kind: 'problem',
        text,
        label: '1',
        sourceGroupId: null,
        question: text,
        tags: [],
      },
      promptTokens: renderPromptTokens(charTokenizer, text),
      policyVersion: version,
      responses: Array.from({ length: 4 }, (_, i) => {
        const t = answers[(g * 3 + i + step) % answers.length] as string;
        return {
          text: t,
          tokens: [...charTokenizer.encode(t), charTokenizer.eosId],
          logprobs: [],
          finish: 'stop' as const,
          reward: (i + g + step) % 2 === 0 ? 1 : 0,
          extracted: null,
          reason: 'test',
        };
      }),
    };
  });
}

async function grpoTask(
  redis: Redis,
  prefix: string,
  step: number,
  version: number,
  count = 3,
): Promise<LearnTask> {
  const gs = groups(step, version, count);
  const key = jobKeys.groups(prefix, JOB, step, 'policy');
  for (const g of gs) await redis.hset(key, g.groupId, JSON.stringify(g));
  return {
    jobId: JOB,
    step,
    phase: 'policy',
    policyVersion: version,
    groupIds: gs.map((g) => g.groupId),
    hyper,
    sft: [],
  };
}

function warmupTask(): LearnTask {
  const sft = Array.from({ length: 6 }, (_, i) => ({
    prompt: `What is ${i}+${i}?`,
    target: `The answer is \\boxed{${2 * i}}${' ok'.repeat(i)}`,
  }));
  return { jobId: JOB, step: 0, phase: 'warmup', policyVersion: 0, groupIds: [], hyper, sft };
}

/** ‖a − b‖₂ / ‖a‖₂ and max |a − b| / max |a| over the flat parameter buffers. */
function relDiff(a: Float32Array, b: Float32Array): { norm: number; max: number } {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  let d2 = 0;
  let a2 = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const e = x - (b[i] as number);
    d = Math.max(d, Math.abs(e));
    m = Math.max(m, Math.abs(x));
    d2 += e * e;
    a2 += x * x;
  }
  return { norm: Math.sqrt(d2 / a2), max: d / m };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);

/** One learner and a 2-rank group (leader here, follower a process) train the same tasks; compare. */
async function compareOneAndTwo(name: string, zero: boolean): Promise<void> {
  const url = await testRedisUrl();
  const redis = connectRedis(url);
  await whenRedisReady(redis);
  const single = await startSide(url, redis, `${name}-1`, {}, false);
  const groupExtra = {
    learnerRanks: 2,
    learnerRank: 0,
    learnerZero: zero,
    collectiveHost: '127.0.0.1',
    collectiveTimeoutMs: TIMEOUT_MS,
  };
  const leader = await startSide(url, redis, `${name}-2`, groupExtra, true);
  const follower = await spawnFollower(url, leader.prefix, 1, 2, zero ? { SPARK_LEARNER_ZERO: '1' } : {});
  try {
    const results: [LearnResult, LearnResult][] = [];
    results.push([
      await single.service.learner.learn(warmupTask()),
      await leader.service.learner.learn(warmupTask()),
    ]);
    for (let step = 1; step <= 3; step++) {
      const v = results.at(-1)?.[0].policyVersion as number;
      // the last task is the job's final one: a checkpoint (under ZeRO-1 the moments gathered first)
      const last = step === 3 ? { final: true } : {};
      const a = await single.service.learner.learn({
        ...(await grpoTask(redis, single.prefix, step, v)),
        ...last,
      });
      const b = await leader.service.learner.learn({
        ...(await grpoTask(redis, leader.prefix, step, v)),
        ...last,
      });
      results.push([a, b]);
    }
    for (const [a, b] of results) {
      assert.equal(b.policyVersion, a.policyVersion);
      assert.equal(b.sequences, a.sequences);
      assert.equal(b.tokens, a.tokens);
      assert.equal(b.optimizerSteps, a.optimizerSteps);
      assert.ok(rel(a.loss, b.loss) <= 1e-5, `loss ${a.loss} vs ${b.loss}`);
      assert.ok(rel(a.gradNorm, b.gradNorm) <= 1e-4, `grad norm ${a.gradNorm} vs ${b.gradNorm}`);
    }
    assert.equal(results.at(-1)?.[1].policyVersion, 4);
    // the formed generation's rendezvous keys are gone (a stale rank cannot dial into the group)
    assert.deepEqual(await redis.keys(`${groupKey(leader.prefix, JOB)}:g*/*`), []);
    const pa = await (single.service.learner.job(JOB)?.model.getParams() as Promise<Float32Array>);
    const pb = await (leader.service.learner.job(JOB)?.model.getParams() as Promise<Float32Array>);
    const d = relDiff(pa, pb);
    process.stderr.write(`${name}: parameters 1 vs 2 ranks: ${JSON.stringify(d)}\n`);
    assert.ok(d.norm <= 1e-5, `parameters differ by ${d.norm} (‖Δθ‖/‖θ‖)`);
    const leaderModel = leader.service.learner.job(JOB)?.model;
    const singleModel = single.service.learner.job(JOB)?.model;
    assert.ok(leaderModel && singleModel);
    // the final checkpoint holds the whole AdamW state (gathered from the slices under ZeRO-1), equal to
    // the single learner's
    assert.ok(results.at(-1)?.[1].checkpointPath, 'the leader wrote the final checkpoint');
    const [oa, ob] = await Promise.all([singleModel.getOptimizerState(), leaderModel.getOptimizerState()]);
    assert.equal(ob.step, oa.step);
    assert.ok(relDiff(oa.m, ob.m).norm <= 1e-4, `AdamW m: ${JSON.stringify(relDiff(oa.m, ob.m))}`);
    assert.ok(relDiff(oa.v, ob.v).norm <= 1e-4, `AdamW v: ${JSON.stringify(relDiff(oa.v, ob.v))}`);
    if (zero) {
      // one more sharded step (no checkpoint): the leader keeps only its slice of the moments again
      const v = results.at(-1)?.[1].policyVersion as number;
      await leader.service.learner.learn(await grpoTask(redis, leader.prefix, 4, v));
      const shard = await leaderModel.getOptimizerShard();
      assert.equal(shard.offset, 0);
      assert.ok(shard.m.length > 0 && shard.m.length < leaderModel.numParams, `slice of ${shard.m.length}`);
      await assert.rejects(leaderModel.getOptimizerState(), /sharded/);
    }
  } finally {
    await stop(follower);
    for (const side of [single, leader]) {
      await side.service.close();
      await rm(side.dir, { recursive: true, force: true });
    }
    await redis.quit();
  }
}

describe('learner group (2 ranks, 2 processes)', () => {
  it("2 ranks train 1 SFT + 3 GRPO tasks to the single learner's losses and parameters (1e-5 relative)", () =>
    compareOneAndTwo('dp-equal', false));

  it('the same with ZeRO-1 (AdamW moments sharded over the ranks)', () => compareOneAndTwo('dp-zero', true));

  it('a follower SIGKILLed mid-step: no rank applies the update; once it is back the task completes', async () => {
    const url = await testRedisUrl();
    const redis = connectRedis(url);
    await whenRedisReady(redis);
    const leader = await startSide(
      url,
      redis,
      'dp-kill',
      {
        learnerRanks: 2,
        learnerRank: 0,
        collectiveHost: '127.0.0.1',
        collectiveTimeoutMs: TIMEOUT_MS,
        groupFormTimeoutMs: 120_000,
      },
      true,
    );
    let follower = await spawnFollower(url, leader.prefix, 1, 2);
    // a follower serves gRPC health (the pod's probes) but no PolicyService
    const health = { token: null, defaultDeadlineMs: 5_000 };
    assert.equal(await checkHealth(`127.0.0.1:${follower.grpcPort}`, health), 'SERVING');
    await assert.rejects(
      checkHealth(`127.0.0.1:${follower.grpcPort}`, { ...health, service: 'spark.v1.PolicyService' }),
      /NOT_FOUND|unknown|not found/i,
    );
    const queue = createQueue<LearnTask>(queueName('learn', JOB), {
      url,
      prefix: leader.prefix,
      defaultJobOptions,
    });
    try {
      const learner = leader.service.learner;
      await learner.learn(warmupTask());
      const job = learner.job(JOB);
      assert.ok(job);
      const before = await job.model.getParams();
      const steps = job.optimizerSteps;
      const gen = Number(await redis.get(`${groupKey(leader.prefix, JOB)}:gen`));
      // a long step: 16 groups × 4 = 64 sequences in 8 minibatches (8 all-reduces)
      const task = await grpoTask(redis, leader.prefix, 1, job.version, 16);
      await queue.waitUntilReady();
      await queue.add('learn', task, { jobId: '1/policy' });
      // mid-step: the leader has taken at least one AdamW step of the task, not the last
      await until(() => job.optimizerSteps > steps, {
        timeoutMs: 60_000,
        message: 'the first minibatch of the task',
      });
      follower.kill('SIGKILL');
      await new Promise((r) => follower.once('exit', r));
      // the attempt fails on the leader and rolls back: the weights are the ones before the task
      await until(() => job.optimizerSteps === steps, { timeoutMs: 30_000, message: 'the rollback' });
      assert.deepEqual(await job.model.getParams(), before, 'the leader did not apply the update');
      assert.equal(job.version, task.policyVersion);
      assert.equal(await redis.get(jobKeys.learned(leader.prefix, JOB, 1, 'policy')), null);
      // the rank comes back: the group re-forms under a later generation and the redelivered task completes
      follower = await spawnFollower(url, leader.prefix, 1, 2);
      const key = jobKeys.learned(leader.prefix, JOB, 1, 'policy');
      await until(async () => (await redis.get(key)) !== null, {
        timeoutMs: 120_000,
        message: 'the task to complete',
      });
      const result = parseLearnResult(JSON.parse((await redis.get(key)) as string));
      assert.equal(result.policyVersion, task.policyVersion + 1);
      assert.ok(Number(await redis.get(`${groupKey(leader.prefix, JOB)}:gen`)) > gen, 'a new generation');
      assert.equal(job.version, task.policyVersion + 1);
    } finally {
      await queue.close();
      await stop(follower);
      await leader.service.close();
      await rm(leader.dir, { recursive: true, force: true });
      await redis.quit();
    }
  });

  it('a follower that hangs mid-step (SIGSTOP past the time-out): no rank applies the update; the group re-forms', async () => {
    const url = await testRedisUrl();
    const redis = connectRedis(url);
    await whenRedisReady(redis);
    const leader = await startSide(
      url,
      redis,
      'dp-hang',
      {
        learnerRanks: 2,
        learnerRank: 0,
        collectiveHost: '127.0.0.1',
        collectiveTimeoutMs: TIMEOUT_MS,
        groupFormTimeoutMs: 120_000,
      },
      true,
    );
    const follower = await spawnFollower(url, leader.prefix, 1, 2);
    try {
      const learner = leader.service.learner;
      await learner.learn(warmupTask());
      const job = learner.job(JOB);
      assert.ok(job);
      await until(async () => (await metric(follower.metricsPort, 'spark_learner_policy_version')) === 1, {
        message: 'the follower to take the warm-up',
      });
      const before = await job.model.getParams();
      const steps = job.optimizerSteps;
      const task = await grpoTask(redis, leader.prefix, 1, job.version, 16);
      const attempt = learner.learn(task);
      await until(() => job.optimizerSteps > steps, { timeoutMs: 60_000, message: 'the first minibatch' });
      follower.kill('SIGSTOP');
      // the leader's next collective times out: the attempt fails and the update is rolled back
      await assert.rejects(attempt, /COLLECTIVE|timed out|time-out|timeout/i);
      assert.equal(job.optimizerSteps, steps);
      assert.deepEqual(await job.model.getParams(), before);
      assert.equal(job.version, task.policyVersion);
      // the follower wakes up: its collective fails (the leader closed it), it rolls back too
      follower.kill('SIGCONT');
      await until(
        async () => ((await metric(follower.metricsPort, 'spark_learner_group_formations_total')) ?? 0) >= 2,
        {
          timeoutMs: 60_000,
          message: 'the follower to re-join under a new generation',
        },
      );
      assert.equal(
        await metric(follower.metricsPort, 'spark_learner_policy_version'),
        1,
        'the follower did not apply it',
      );
      // the redelivery trains on both ranks
      const result = await learner.learn(task);
      assert.equal(result.policyVersion, task.policyVersion + 1);
      // (the follower commits right after the vote the leader returned from)
      await until(async () => (await metric(follower.metricsPort, 'spark_learner_policy_version')) === 2, {
        message: 'the follower at version 2',
      });
    } finally {
      if (follower.signalCode === null) follower.kill('SIGCONT');
      await stop(follower);
      await leader.service.close();
      await rm(leader.dir, { recursive: true, force: true });
      await redis.quit();
    }
  });

  it('ZeRO-1, a follower lost between tasks: its moments are gone, so the leader reloads the latest checkpoint and the group goes on from there', async () => {
    const url = await testRedisUrl();
    const redis = connectRedis(url);
    await whenRedisReady(redis);
    const leader = await startSide(
      url,
      redis,
      'dp-zero-lost',
      {
        learnerRanks: 2,
        learnerRank: 0,
        learnerZero: true,
        collectiveHost: '127.0.0.1',
        collectiveTimeoutMs: TIMEOUT_MS,
        groupFormTimeoutMs: 120_000,
      },
      true,
    );
    let follower = await spawnFollower(url, leader.prefix, 1, 2, { SPARK_LEARNER_ZERO: '1' });
    try {
      const learner = leader.service.learner;
      // warm-up as the final task of its phase: a checkpoint at version 1, the moments gathered whole
      const warm = await learner.learn({ ...warmupTask(), final: true });
      assert.ok(warm.checkpointPath);
      const step1 = await grpoTask(redis, leader.prefix, 1, 1);
      assert.equal((await learner.learn(step1)).policyVersion, 2);
      const firstSha = await redis.hget(jobKeys.policy(leader.prefix, JOB), 'sha256');
      // the follower dies between tasks and comes back empty
      follower.kill('SIGKILL');
      await new Promise((r) => follower.once('exit', r));
      follower = await spawnFollower(url, leader.prefix, 1, 2, { SPARK_LEARNER_ZERO: '1' });
      // the next task: an attempt may first fail on the collective the dead rank left (BullMQ would retry
      // it); the group then re-forms, finds the new rank behind and the moments sharded
      const step2 = await grpoTask(redis, leader.prefix, 2, 2);
      let err: unknown = null;
      for (let attempt = 0; attempt < 3; attempt++) {
        err = await learner.learn(step2).then(
          () => null,
          (e: unknown) => e,
        );
        if (err instanceof Error && /ZeRO-1/.test(err.message)) break;
        assert.match(String(err), /COLLECTIVE|Connection closed|peer/i);
      }
      assert.match(String(err), /ZeRO-1.*latest checkpoint/);
      // the leader reloaded the job from its checkpoint and recorded where it resumed (the coordinator rewinds)
      await until(() => learner.job(JOB)?.version === 1, { timeoutMs: 60_000, message: 'the reload' });
      const resumed = JSON.parse((await redis.get(jobKeys.resumed(leader.prefix, JOB))) ?? '{}') as {
        version?: number;
      };
      assert.equal(resumed.version, 1);
      // the coordinator's rewind deletes the abandoned step's result; the re-run of step 1 trains on both
      // ranks again, to the same weights as the first time
      await redis.del(jobKeys.learned(leader.prefix, JOB, 1, 'policy'));
      const again = await learner.learn(await grpoTask(redis, leader.prefix, 1, 1));
      assert.equal(again.policyVersion, 2);
      assert.equal(await redis.hget(jobKeys.policy(leader.prefix, JOB), 'sha256'), firstSha);
      await until(async () => (await metric(follower.metricsPort, 'spark_learner_policy_version')) === 2, {
        message: 'the new follower at version 2',
      });
    } finally {
      await stop(follower);
      await leader.service.close();
      await rm(leader.dir, { recursive: true, force: true });
      await redis.quit();
    }
  });
});
