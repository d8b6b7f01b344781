// Time accounting: a call is charged only for the time its symbolic step runs in a worker (plus the
// in-thread rules); waiting for a worker — after terminations used up the warm spares — is reported apart
// (`waitMs`) and not charged. After a flood of engine-hanging calls, each one's charged time stays within
// the budget bound, and a simple symbolic call still gets its verdict, not a time-out.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEFAULT_MAX_RUN_WALL_FACTOR, Verifier } from '../index.js';

/** Termination latency and timer lateness on a loaded shared machine (the benchmark measures it). */
const SLACK_MS = 700;
const BUDGET_MS = 50;
const HANGING = '\\boxed{\\prod_{k=1}^{100000} k}';

void test('after N terminations in a row, charged time stays within the budget and a simple call is right', async () => {
  // 5 terminations with 2 spares: the last ones wait for replacements that are still warming.
  const n = 5;
  const v = new Verifier({ budgetMs: BUDGET_MS, workers: 1, spares: 2, maxQueueWaitMs: 60_000 });
  try {
    await v.ready();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      const r = await v.verify(HANGING, String(i), { timing: true });
      const wall = performance.now() - s;
      assert.equal(r.status, 'timeout');
      assert.match(r.reason, /^boxed:symbolic-timeout \(running, budget 50 ms\)$/);
      assert.ok(r.symbolicMs !== undefined && r.waitMs !== undefined);
      // The worker was stopped at what was left of the budget after the in-thread rules: its run is at
      // most the budget plus timer and termination lateness, never the engine's seconds.
      assert.ok(
        r.symbolicMs > 0 && r.symbolicMs <= BUDGET_MS + SLACK_MS,
        `call ${i}: ran ${r.symbolicMs} ms`,
      );
      // The budget is charged in CPU time: the worker got what the in-thread rules left of it (a few ms
      // go to them on a cold first call), and used it up. In wall time the run (latency less the wait for
      // a worker) takes at least that, and at most the absolute wall bound (200 × budget) on a machine so loaded that
      // the worker thread gets little CPU.
      assert.ok(r.symbolicMs >= BUDGET_MS / 2, `call ${i}: charged ${r.symbolicMs.toFixed(1)} ms of CPU`);
      const run = wall - r.waitMs;
      assert.ok(run >= r.symbolicMs - 2, `call ${i}: ran ${run.toFixed(1)} ms`);
      assert.ok(
        run <= BUDGET_MS * DEFAULT_MAX_RUN_WALL_FACTOR + SLACK_MS,
        `call ${i}: ran ${run.toFixed(1)} ms`,
      );
      assert.ok(r.waitMs <= wall + 1);
    }
    assert.equal(v.terminations, n);

    // The flood is over: a simple symbolic call waits (bounded by maxQueueWaitMs) for a warm worker if
    // need be, and is then decided on its merits. Its budget (1 s) is far below a worker's start-up under
    // load, so a charged wait would cut it off; it is only raised above 50 ms because a 1 ms check can be
    // descheduled for tens of ms on this loaded 2-core machine (determinism.test.ts covers 50 ms).
    const ok = await v.verify('\\boxed{(x+1)^2}', 'x^2+2x+1', { timing: true, budgetMs: 1_000 });
    assert.equal(ok.reward, 1, ok.reason);
    assert.equal(ok.reason, 'boxed:symbolic');
    assert.equal(ok.status, undefined);
    assert.ok(ok.symbolicMs !== undefined && ok.symbolicMs > 0 && ok.symbolicMs <= 1_000);
    assert.ok(ok.waitMs !== undefined && ok.waitMs >= 0);
  } finally {
    await v.close();
  }
});

void test('timing is only added on request, and is zero when the rules decide alone', async () => {
  const v = new Verifier({ spares: 0 });
  try {
    assert.deepEqual(await v.verify('\\boxed{1,000}', '1000'), {
      reward: 1,
      extracted: '1,000',
      reason: 'boxed:normalized-string',
    });
    assert.deepEqual(await v.verify('\\boxed{1,000}', '1000', { timing: true }), {
      reward: 1,
      extracted: '1,000',
      reason: 'boxed:normalized-string',
      symbolicMs: 0,
      waitMs: 0,
    });
    assert.deepEqual(await v.verifyAnswer('7', '8', { timing: true }), {
      reward: 0,
      extracted: '7',
      reason: 'given:numeric-mismatch',
      symbolicMs: 0,
      waitMs: 0,
    });
    // Not awaiting ready(): the first symbolic call waits for the worker to start, uncharged.
    const sym = await v.verify('\\boxed{2\\sqrt{2}}', '\\sqrt{8}', { timing: true });
    assert.equal(sym.reason, 'boxed:symbolic');
    assert.ok(sym.waitMs !== undefined && sym.waitMs > 0, `waited ${sym.waitMs} ms`);
    assert.ok(sym.symbolicMs !== undefined && sym.symbolicMs > 0 && sym.symbolicMs <= 50);
  } finally {
    await v.close();
  }
});
