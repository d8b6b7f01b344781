// Reward-synthesis service against a real Redis and real BullMQ queues: exactly B items released once per
// step, a redelivered step returns the stored batch without touching the buffer, a new epoch clears the
// buffer, grpo-judge (reflection off) makes no reflections, the buffer bound drops the oldest items, and
// close() while a task is queued or running loses nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  jobKeys,
  queueName,
  synthesisTaskId,
  type PromptItem,
  parseSynthesisResult,
  type SynthesisResult,
  type SynthesisTask,
  type VerifiedGroup,
  type VerifiedResponse,
} from '@spark/contract';
import { FailedPreconditionError } from '@spark/runtime';
import { createLogger } from '@spark/runtime/logging';
import { connectRedis, createQueue, type Redis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl, until } from '@spark/runtime/testing';

import {
  startRewardSynthesis,
  synthesisConfig,
  synthesize,
  whenReady,
  type SynthesisOptions,
} from './index.js';

const silent = createLogger({ service: 'test', level: 'silent' });
const OPTS: SynthesisOptions = { templateVariant: 'short', maxCotChars: 400, maxBufferItems: 1000 };

function response(answer: string | null, reward: 0 | 1): VerifiedResponse {
  const text = answer === null ? 'I do not know' : `so the answer is \\boxed{${answer}}`;
  return { text, tokens: [], logprobs: [], finish: 'stop', reward, extracted: answer, reason: 'test' };
}

/** n groups cycling through all-correct, all-wrong and mixed. */
function makeGroups(step: number, n: number): VerifiedGroup[] {
  return Array.from({ length: n }, (_, i) => {
    const gold = String(10 + i);
    const prompt: PromptItem = {
      promptId: `p${i}`,
      kind: 'problem',
      text: `What is ${gold}? Put the answer in \\boxed{}.`,
      label: gold,
      sourceGroupId: null,
      question: `What is ${gold}?`,
      tags: [],
    };
    const right = response(gold, 1);
    const wrong = response(String(1000 + i), 0);
    const responses =
      i % 3 === 0
        ? [right, right, right, right]
        : i % 3 === 1
          ? [wrong, wrong, wrong, wrong]
          : [right, wrong, wrong, right];
    return { groupId: `${step}/policy/p${i}`, prompt, promptTokens: [], policyVersion: step, responses };
  });
}

async function storeGroups(
  redis: Redis,
  prefix: string,
  jobId: string,
  step: number,
  groups: VerifiedGroup[],
) {
  const key = jobKeys.groups(prefix, jobId, step, 'policy');
  await redis.hset(key, Object.fromEntries(groups.map((g) => [g.groupId, JSON.stringify(g)])));
}

function task(jobId: string, step: number, over: Partial<SynthesisTask> = {}): SynthesisTask {
  return {
    jobId,
    step,
    epoch: 0,
    batchSize: 4,
    seed: 7,
    judge: true,
    reflection: true,
    groupIds: makeGroups(step, 12).map((g) => g.groupId),
    ...over,
  };
}

void describe('reward-synthesis', () => {
  let url: string;
  let redis: Redis;
  before(async () => {
    url = await testRedisUrl();
    redis = connectRedis(url);
    await whenReady(redis, 5_000);
  });
  after(async () => {
    await redis.quit();
  });

  void it('releases exactly B items once per step; redelivery returns the same batch', async () => {
    const prefix = testPrefix('synth-once');
    await storeGroups(redis, prefix, 'j1', 1, makeGroups(1, 12));
    const t = task('j1', 1);
    const first = await synthesize(redis, prefix, t, OPTS);
    assert.equal(first.fresh, true);
    const r = first.result;
    assert.ok(r.released);
    assert.equal(r.released.length, 4);
    assert.ok(r.judgeItems <= 2, 'judge items capped at B/2');
    assert.ok(r.judgeItems >= 1);
    // 8 of 12 groups have a wrong response → 8 reflection candidates, of which the method keeps B/2 = 2,
    // so a step adds at most B items (judge ≤ B/2 + reflection ≤ B/2) while the reward phase takes B
    assert.equal(r.reflectionItems, 2);
    assert.ok(r.judgeItems + r.reflectionItems <= 4, 'a step adds at most B items to the buffer');
    assert.equal(r.bufferLength, r.judgeItems + r.reflectionItems - 4);
    assert.equal(await redis.llen(jobKeys.buffer(prefix, 'j1')), r.bufferLength);
    // items are well-formed: kinds, labels, provenance
    const items = first.items;
    for (const it of items) {
      assert.ok(it.sourceGroupId?.startsWith('1/policy/p'));
      if (it.kind === 'reflection') {
        const g = Number(it.sourceGroupId?.slice('1/policy/p'.length));
        assert.equal(it.label, String(10 + g), 'reflection label = gold answer');
        assert.ok(it.tags.includes('cot') || it.tags.includes('answer'));
      } else {
        assert.ok(['Yes', 'No', 'A', 'B'].includes(it.label));
        assert.ok(it.kind === 'pointwise' || it.kind === 'pairwise');
      }
    }
    // the released batch is the FIFO head: the first B items pushed, in order
    assert.deepEqual(r.released, items.slice(0, 4));

    const again = await synthesize(redis, prefix, t, OPTS);
    assert.equal(again.fresh, false);
    assert.deepEqual(again.result, r);
    assert.equal(await redis.llen(jobKeys.buffer(prefix, 'j1')), r.bufferLength, 'buffer untouched');

    // deterministic in (seed, step): the same step on a fresh prefix gives the same items
    const prefix2 = testPrefix('synth-det');
    await storeGroups(redis, prefix2, 'j1', 1, makeGroups(1, 12));
    const other = await synthesize(redis, prefix2, t, OPTS);
    assert.deepEqual(other.result, r);
  });

  void it('keeps leftovers across steps, clears the buffer on a new epoch, bounds the buffer', async () => {
    // With both caps at B/2 a full step adds at most B items and releases B, so leftovers come from a
    // step that yields fewer than B: step 1 recycles a single group (≤ 1 judge + ≤ 1 reflection item).
    const prefix = testPrefix('synth-epoch');
    await storeGroups(redis, prefix, 'j2', 1, makeGroups(1, 1));
    await storeGroups(redis, prefix, 'j2', 2, makeGroups(2, 12));
    await storeGroups(redis, prefix, 'j2', 3, makeGroups(3, 12));
    const s1 = (
      await synthesize(
        redis,
        prefix,
        task('j2', 1, { groupIds: makeGroups(1, 1).map((g) => g.groupId) }),
        OPTS,
      )
    ).result;
    assert.equal(s1.released, null, 'fewer than B items: no reward phase this step');
    const left1 = s1.bufferLength;
    assert.equal(left1, s1.judgeItems + s1.reflectionItems);
    assert.ok(left1 > 0);
    const s2 = (await synthesize(redis, prefix, task('j2', 2), OPTS)).result;
    assert.equal(s2.epochCleared, false);
    assert.ok(s2.released, 'leftovers plus the new items reach B');
    assert.equal(s2.bufferLength, left1 + s2.judgeItems + s2.reflectionItems - 4);
    // the released batch of step 2 starts with step 1's leftovers (FIFO)
    assert.match(s2.released[0]?.promptId ?? '', /^[jr]-1-/);
    const s3 = (await synthesize(redis, prefix, task('j2', 3, { epoch: 1 }), OPTS)).result;
    assert.equal(s3.epochCleared, true);
    for (const item of s3.released ?? []) assert.match(item.promptId, /^[jr]-3-/);
    assert.equal(
      s3.bufferLength,
      s3.judgeItems + s3.reflectionItems - (s3.released ? 4 : 0),
      'leftovers of epoch 0 dropped',
    );
    assert.equal(await redis.get(jobKeys.bufferEpoch(prefix, 'j2')), '1');

    // The bound (never below B) drops the oldest items beyond it before the release: B = 4 and a bound of 4,
    // a 1-group step leaves its items waiting, the next full step pushes the buffer over the bound.
    const bounded = testPrefix('synth-bound');
    const opts = { ...OPTS, maxBufferItems: 4 };
    await storeGroups(redis, bounded, 'j3', 1, makeGroups(1, 1));
    await storeGroups(redis, bounded, 'j3', 2, makeGroups(2, 12));
    const b1 = await synthesize(
      redis,
      bounded,
      task('j3', 1, { groupIds: makeGroups(1, 1).map((g) => g.groupId) }),
      opts,
    );
    const waiting = b1.result.bufferLength;
    assert.ok(waiting > 0 && b1.result.released === null);
    const b2 = await synthesize(redis, bounded, task('j3', 2), opts);
    const total = waiting + b2.result.judgeItems + b2.result.reflectionItems;
    assert.ok(total > 4, 'the buffer went over its bound');
    assert.equal(b2.result.dropped, total - 4);
    assert.ok(b2.result.released, 'B items remain and are released');
    for (const item of b2.result.released) assert.match(item.promptId, /^[jr]-2-/, 'the oldest were dropped');
    assert.equal(b2.result.bufferLength, 0);
  });

  void it('grpo-judge (reflection off) makes judge items only; pairwise/pointwise switches hold', async () => {
    const prefix = testPrefix('synth-judge');
    await storeGroups(redis, prefix, 'j4', 1, makeGroups(1, 40));
    const ids = makeGroups(1, 40).map((g) => g.groupId);
    const judgeOnly = await synthesize(
      redis,
      prefix,
      task('j4', 1, { reflection: false, groupIds: ids, batchSize: 16 }),
      OPTS,
    );
    assert.equal(judgeOnly.result.reflectionItems, 0);
    assert.ok(judgeOnly.items.length > 0);
    assert.ok(judgeOnly.items.every((i) => i.kind !== 'reflection'));
    assert.ok(judgeOnly.items.length <= 8);

    const missing = await synthesize(redis, prefix, task('j4', 2), OPTS).catch((e: unknown) => e);
    assert.ok(missing instanceof FailedPreconditionError, 'groups not stored yet → retryable error');
    await storeGroups(redis, prefix, 'j4', 2, makeGroups(2, 40));
    const pointOnly = await synthesize(
      redis,
      prefix,
      task('j4', 2, { reflection: false, pairwise: false, groupIds: [], batchSize: 64 }),
      OPTS,
    );
    assert.ok(pointOnly.items.length > 0 && pointOnly.items.every((i) => i.kind === 'pointwise'));
    await storeGroups(redis, prefix, 'j4', 3, makeGroups(3, 40));
    const pairOnly = await synthesize(
      redis,
      prefix,
      task('j4', 3, { reflection: false, pointwise: false, groupIds: [], batchSize: 64 }),
      OPTS,
    );
    assert.ok(pairOnly.items.length > 0 && pairOnly.items.every((i) => i.kind === 'pairwise'));
  });

  void it('serves the job queue; close() with tasks queued loses none (a new instance finishes them)', async () => {
    const prefix = testPrefix('synth-svc');
    const jobId = 'j5';
    for (let s = 1; s <= 6; s++) await storeGroups(redis, prefix, jobId, s, makeGroups(s, 12));
    await redis.sadd(jobKeys.active(prefix), jobId);
    const config = synthesisConfig({ redisUrl: url, redisPrefix: prefix, pollMs: 20, logLevel: 'silent' });
    const queue = createQueue<SynthesisTask>(queueName('synthesis', jobId), { url, prefix });
    after(() => queue.close());
    await queue.waitUntilReady();
    const svc = await startRewardSynthesis(config, { logger: silent });
    after(() => svc.close());
    for (let s = 1; s <= 6; s++) await queue.add('synthesis', task(jobId, s), { jobId: synthesisTaskId(s) });
    // close as soon as the first task is taken: it completes, the rest stay queued
    await until(async () => (await queue.getActiveCount()) + (await queue.getCompletedCount()) > 0, {
      message: 'the first task to be taken',
      intervalMs: 5,
    });
    await svc.close();
    const states = await Promise.all([1, 2, 3, 4, 5, 6].map((s) => queue.getJobState(synthesisTaskId(s))));
    for (const st of states) assert.ok(st === 'completed' || st === 'waiting', `state after close: ${st}`);
    const svc2 = await startRewardSynthesis(config, { logger: silent });
    after(() => svc2.close());
    const results = await until(
      async () => {
        const jobs = await Promise.all([1, 2, 3, 4, 5, 6].map((s) => queue.getJob(synthesisTaskId(s))));
        if (jobs.some((j) => !j?.finishedOn)) return null;
        return jobs.map((j) => j?.returnvalue as SynthesisResult);
      },
      { timeoutMs: 120_000, message: 'all six synthesis tasks to finish' },
    );
    await svc2.close();
    for (let s = 1; s <= 6; s++) {
      const stored = parseSynthesisResult(
        JSON.parse((await redis.get(jobKeys.synth(prefix, jobId, s))) ?? 'null'),
      );
      assert.deepEqual(results[s - 1], stored);
      assert.equal(stored.released?.length, 4);
    }
    const text = await svc2.metrics.registry.metrics();
    assert.match(text, /spark_reward_synthesis_batches_released_total [1-9]/);

    // a malformed task fails at once, without retries
    await queue.add('synthesis', { jobId, step: -1 } as unknown as SynthesisTask, {
      jobId: 'synth-bad',
      attempts: 5,
    });
    const svc3 = await startRewardSynthesis(config, { logger: silent });
    after(() => svc3.close());
    await until(async () => (await queue.getJobState('synth-bad')) === 'failed', {
      message: 'the malformed task to fail',
    });
    const bad = await queue.getJob('synth-bad');
    assert.ok(bad && bad.attemptsMade <= 1);
    assert.match((bad.stacktrace ?? []).join('\n'), /UnrecoverableError: invalid SynthesisTask/);
    await queue.close();
    await redis.srem(jobKeys.active(prefix), jobId);
  });
});
