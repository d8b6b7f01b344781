// The chaos run's invariant checker (test/chaos/chaos.ts, checkInvariants) must be able to fail: a job's
// records are written to a real Redis as a consistent run leaves them — a LearnResult per (step, phase)
// with contiguous policy versions, the job's recorded version, reward-synthesis's released batches, the
// event stream with a rewind event — and the checker finds nothing; then each record is corrupted in turn
// and the checker must name what broke.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { jobKeys, type LearnResult } from '@spark/contract';
import { connectRedis, type Redis } from '@spark/runtime/redis';
import { whenRedisReady } from '@spark/runtime/service';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

import { chaosJob, checkInvariants } from './chaos/chaos.js';

const spec = chaosJob(1, 1);
const JOB = 'chaos-inv';
const SEQS = spec.batchSize * spec.groupSize;

function learnResult(policyVersion: number, over: Partial<LearnResult> = {}): string {
  const r: LearnResult = {
    policyVersion,
    optimizerSteps: 1,
    sequences: SEQS,
    tokens: 100,
    loss: 0.5,
    kl: 0,
    clipFraction: 0,
    gradNorm: 1,
    staleGroups: 0,
    seconds: { logprobs: 0.01, train: 0.1, publish: 0.01 },
    ...over,
  };
  return JSON.stringify(r);
}

const item = (promptId: string) => ({
  promptId,
  kind: 'pointwise',
  text: 't',
  label: 'Yes',
  sourceGroupId: null,
  question: null,
  tags: [],
});

/** Policy and reward phase of step s make versions warmup+1+2s and warmup+2+2s. */
const version = (step: number, phase: 'policy' | 'reward') =>
  spec.warmupSteps + 1 + 2 * step + (phase === 'reward' ? 1 : 0);
const LAST = version(spec.maxSteps - 1, 'reward');

const EVENTS = [
  'job submitted',
  'step 0 done',
  'learner resumed at policy version 4 (policy checkpoint of step 1): rewound from step 3 to step 2; abandoned updates: policy:3',
  'step 2 done',
  'job succeeded',
];

/** Writes the records of a consistent run under `p`. */
async function writeConsistent(redis: Redis, p: string): Promise<void> {
  for (let step = 0; step < spec.maxSteps; step++) {
    for (const phase of ['policy', 'reward'] as const)
      await redis.set(jobKeys.learned(p, JOB, step, phase), learnResult(version(step, phase)));
    const released = step % 2 === 0 ? [item(`j-${step}-a`), item(`j-${step}-b`)] : null;
    await redis.set(
      jobKeys.synth(p, JOB, step),
      JSON.stringify({ judgeItems: 2, reflectionItems: 0, bufferLength: 0, released }),
    );
  }
  await redis.hset(jobKeys.job(p, JOB), { policyVersion: LAST, state: 'JOB_STATE_SUCCEEDED' });
  for (const [i, message] of EVENTS.entries())
    await redis.xadd(jobKeys.events(p, JOB), '*', 'seq', i + 1, 'e', JSON.stringify({ message }));
}

/** Replays the stream as WatchJob would (optionally dropping one seq). */
function replayFrom(redis: Redis, p: string, drop?: number): () => AsyncIterable<{ seq: number }> {
  return async function* () {
    for (const [, f] of await redis.xrange(jobKeys.events(p, JOB), '-', '+')) {
      const seq = Number(f[f.indexOf('seq') + 1]);
      if (seq !== drop) yield { seq };
    }
  };
}

describe('chaos invariant checker', () => {
  let redis: Redis;
  before(async () => {
    redis = connectRedis(await testRedisUrl());
    await whenRedisReady(redis);
  });
  after(() => redis.disconnect());

  async function check(
    name: string,
    corrupt: (p: string) => Promise<void>,
    drop?: number,
  ): Promise<{ violations: string[]; rewinds: number; events: number }> {
    const p = testPrefix(`inv-${name}`);
    await writeConsistent(redis, p);
    await corrupt(p);
    return checkInvariants(redis, p, JOB, spec, replayFrom(redis, p, drop));
  }

  it('finds nothing in a consistent run, and counts its events and rewinds', async () => {
    const r = await check('ok', async () => undefined);
    assert.deepEqual(r, { violations: [], rewinds: 1, events: EVENTS.length });
  });

  const cases: [string, (p: string) => Promise<void>, RegExp, number?][] = [
    ['missing update', (p) => redis.del(jobKeys.learned(p, JOB, 5, 'policy')).then(() => undefined), /step 5: no policy update/],
    ['stale groups', (p) => redis.set(jobKeys.learned(p, JOB, 2, 'reward'), learnResult(version(2, 'reward'), { staleGroups: 1 })).then(() => undefined), /2\/reward: 1 stale groups/],
    ['short batch', (p) => redis.set(jobKeys.learned(p, JOB, 3, 'policy'), learnResult(version(3, 'policy'), { sequences: SEQS - 1 })).then(() => undefined), /3\/policy: 7 \+ 0 sequences/],
    ['trained twice', (p) => redis.set(jobKeys.learned(p, JOB, 6, 'reward'), learnResult(version(6, 'policy'))).then(() => undefined), /policy versions .* \(want /],
    ['unreadable record', (p) => redis.set(jobKeys.learned(p, JOB, 4, 'policy'), '{"policyVersion": "x"}').then(() => undefined), /4\/policy: unreadable LearnResult/],
    ['final version', (p) => redis.hset(jobKeys.job(p, JOB), 'policyVersion', LAST - 1).then(() => undefined), new RegExp(`records policy version ${LAST - 1}, its last update made ${LAST}`)],
    ['released twice', (p) => redis.set(jobKeys.synth(p, JOB, 4), JSON.stringify({ judgeItems: 0, reflectionItems: 0, bufferLength: 0, released: [item('j-2-a')] })).then(() => undefined), /recycled item j-2-a released at steps 2 and 4/],
    ['seq gap', async (p) => {
      const [first] = await redis.xrange(jobKeys.events(p, JOB), '-', '+', 'COUNT', 1);
      await redis.xdel(jobKeys.events(p, JOB), first?.[0] ?? '');
    }, /event 0: seq 2 \(want 1\)/],
    ['rewind unlisted', (p) => redis.xadd(jobKeys.events(p, JOB), '*', 'seq', EVENTS.length + 1, 'e', JSON.stringify({ message: 'rewound from step 9 to step 8' })).then(() => undefined), /a rewind event lists no abandoned updates/],
    ['watch lost an event', async () => undefined, /WatchJob replayed seqs 4 events, the stream holds 5/, 3],
  ]; // prettier-ignore
  for (const [name, corrupt, want, drop] of cases)
    it(`reports a corrupted record: ${name}`, async () => {
      const r = await check(name, corrupt, drop);
      assert.ok(
        r.violations.some((v) => want.test(v)),
        `${want} not in ${JSON.stringify(r.violations)}`,
      );
    });
});
