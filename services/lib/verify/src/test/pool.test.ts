// The budget is enforced by terminating the symbolic worker: an evaluation that runs for seconds
// (\prod_{k=1}^{100000} k takes ~24 s in the engine) is cut off at the deadline, a queued job expires,
// the pre-warmed spare takes over, and close() leaves nothing running.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEFAULT_MAX_RUN_WALL_FACTOR, Verifier } from '../index.js';

/** Slack for timer scheduling on a loaded shared machine; the benchmark measures the real overshoot. */
const SLACK_MS = 700;

void test('a hanging symbolic step is stopped at the budget and the spare takes over', async () => {
  const v = new Verifier({ budgetMs: 200, workers: 1, spares: 1, maxQueueWaitMs: 100 });
  try {
    await v.ready();
    const t0 = performance.now();
    const [hang, queued] = await Promise.all([
      v.verify('\\boxed{\\prod_{k=1}^{100000} k}', '1'),
      // Waits behind the hanging job on the one worker and is dropped after maxQueueWaitMs.
      v.verify('\\boxed{2\\sqrt{2}}', '\\sqrt{8}', { budgetMs: 100 }),
    ]);
    const elapsed = performance.now() - t0;
    assert.equal(hang.reward, 0);
    assert.equal(hang.status, 'timeout');
    assert.match(hang.reason, /^boxed:symbolic-timeout \(running, budget 200 ms\)$/);
    assert.equal(hang.extracted, '\\prod_{k=1}^{100000} k');
    assert.equal(queued.reason, 'boxed:symbolic-timeout (queued, budget 100 ms)');
    assert.equal(queued.status, 'timeout');
    // 200 ms of the worker thread's CPU: in wall time at most the absolute wall bound on a loaded machine.
    assert.ok(elapsed < 200 * DEFAULT_MAX_RUN_WALL_FACTOR + SLACK_MS, `took ${elapsed.toFixed(0)} ms`);
    assert.equal(v.terminations, 1);

    // The spare was already warm: the next symbolic call does not pay the engine's ~1 s start-up.
    const t1 = performance.now();
    const ok = await v.verify('\\boxed{(x+1)^2}', 'x^2+2x+1', { budgetMs: 10_000 });
    assert.deepEqual(ok, { reward: 1, extracted: '(x+1)^2', reason: 'boxed:symbolic' });
    assert.ok(performance.now() - t1 < 1_000, `spare took ${(performance.now() - t1).toFixed(0)} ms`);
  } finally {
    await v.close();
  }
});

void test('a backlog of concurrent calls is not charged to their budgets', async () => {
  // 60 symbolic calls at once on one worker: together they take longer than one budget, but each call's
  // budget only counts its own worker time, so none times out (the queue wait has its own, larger bound).
  const v = new Verifier({ budgetMs: 100, workers: 1, spares: 0, maxQueueWaitMs: 10_000 });
  try {
    await v.ready();
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => v.verify(`\\boxed{(x+${i})^2}`, `x^2+${2 * i}x+${i * i}`)),
    );
    const total = performance.now() - t0;
    assert.deepEqual(
      results.filter((r) => r.reward !== 1),
      [],
    );
    assert.ok(results.every((r) => r.reason === 'boxed:symbolic'));
    assert.ok(total > 0);
  } finally {
    await v.close();
  }
});

void test('without a spare a fresh worker replaces the terminated one', async () => {
  const v = new Verifier({ budgetMs: 150, workers: 1, spares: 0 });
  try {
    await v.ready();
    const hang = await v.verify('\\boxed{\\prod_{k=1}^{100000} k}', '1');
    assert.match(hang.reason, /symbolic-timeout \(running/);
    // ready() may resolve before the replacement exists (it is spawned on the next turn of the event loop,
    // and until then the dead slot still counts as ready), so this call can wait for a fresh engine's
    // start-up: ~1 s idle, more than 10 s on a loaded 2-core machine. The budget covers that start-up.
    await v.ready();
    const ok = await v.verify('\\boxed{\\sin^2 x+\\cos^2 x}', '1', { budgetMs: 120_000 });
    assert.equal(ok.reason, 'boxed:symbolic');
    assert.equal(ok.reward, 1);
  } finally {
    await v.close();
  }
});

void test('after close() the fast rules still answer and symbolic calls fail cleanly', async () => {
  const v = new Verifier({ spares: 0 });
  await v.close();
  assert.deepEqual(await v.verify('\\boxed{1,000}', '1000'), {
    reward: 1,
    extracted: '1,000',
    reason: 'boxed:normalized-string',
  });
  const sym = await v.verify('\\boxed{2\\sqrt{2}}', '\\sqrt{8}');
  assert.equal(sym.reward, 0);
  assert.match(sym.reason, /symbolic-error: verifier pool is closed/);
});

void test('non-string inputs and over-long inputs are refused with reasons, never thrown', async () => {
  const v = new Verifier({ maxResponseChars: 10_000, maxLabelChars: 10, spares: 0 });
  try {
    assert.deepEqual(await v.verify(42, '42'), {
      reward: 0,
      extracted: null,
      reason: 'invalid-input: response is not a string',
      status: 'error',
    });
    assert.equal((await v.verify('\\boxed{1}', null)).reason, 'boxed:invalid-input: label is not a string');
    assert.equal((await v.verify('x'.repeat(10_001), '1')).reason, 'response-too-long');
    assert.equal((await v.verify('\\boxed{1}', '1'.repeat(11))).reason, 'boxed:label-too-long');
    assert.equal((await v.verify(`\\boxed{${'1'.repeat(2_001)}}`, '1')).reason, 'answer-too-long');
    const deep = `\\boxed{${'('.repeat(40)}x${')'.repeat(40)}}`;
    assert.match((await v.verify(deep, 'y')).reason, /symbolic-skipped: nested deeper than 32/);
  } finally {
    await v.close();
  }
});
