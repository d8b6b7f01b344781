// The CPU clock behind the symbolic budget (cpuclock.ts, pool.ts): /proc parsing, and the pool charging a
// job its worker thread's CPU time — a spinning job is cut off at the budget, a job blocked without using
// CPU at the wall cap (stage `wall-cap`), a quick one is charged little CPU. The stand-in worker
// (fixtures/test-worker.mjs) starts in milliseconds, unlike the engine's.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';

import { currentThreadId, openThreadClock, parseSchedstat, parseStat, threadCpuMs } from '../cpuclock.js';
import { SymbolicPool } from '../pool.js';

const onLinux = existsSync('/proc/thread-self');
const ENTRY = new URL('./fixtures/test-worker.mjs', import.meta.url);

void test('parses schedstat and stat', () => {
  assert.equal(parseSchedstat('2824984185 10252211723 1249\n'), 2824.984185);
  assert.equal(parseSchedstat(''), null);
  assert.equal(parseSchedstat('garbage'), null);
  // A command name with spaces and parentheses; utime 280 and stime 1 ticks (fields 14, 15).
  const stat =
    '10943 (a b) (c)) R 10928 10928 10351 0 -1 4194304 102 0 0 0 280 1 0 0 20 0 1 0 3811299 3133440 418\n';
  assert.equal(parseStat(stat), 2810);
  assert.equal(parseStat(stat, 1000), 281);
  assert.equal(parseStat('no parenthesis'), null);
  assert.equal(parseStat('1 (x) R 1 2'), null);
});

void test('reads this thread’s CPU clock cheaply', { skip: !onLinux && 'no /proc' }, () => {
  const tid = currentThreadId();
  assert.ok(tid !== null && tid > 0);
  const clock = openThreadClock(tid);
  assert.ok(clock !== null);
  try {
    assert.equal(clock.source, 'schedstat');
    const a = clock.read();
    const end = performance.now() + 30;
    while (performance.now() < end);
    const b = clock.read();
    assert.ok(a !== null && b !== null && b > a, `${a} -> ${b}`);
    const n = 2_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) clock.read();
    const us = ((performance.now() - t0) * 1000) / n;
    // A few µs unloaded; generous for a loaded shared machine.
    assert.ok(us < 200, `${us.toFixed(1)} µs per read`);
  } finally {
    clock.close();
  }
  assert.ok((threadCpuMs() ?? 0) > 0);
});

void test(
  'the pool charges CPU time: spin hits the budget, block the wall cap',
  { skip: !onLinux && 'no /proc' },
  async () => {
    const pool = new SymbolicPool({ workers: 1, spares: 1, entry: ENTRY, wallCapFactor: 10 });
    try {
      await pool.ready();
      const quick = await pool.run('burn:5', '', 1e-6, 50);
      assert.equal(quick.kind, 'done');
      assert.equal(quick.timing?.clock, 'cpu');
      assert.ok((quick.timing?.runMs ?? Infinity) < 50, JSON.stringify(quick.timing));

      const spin = await pool.run('spin', '', 1e-6, 50);
      assert.deepEqual(
        { kind: spin.kind, stage: 'stage' in spin ? spin.stage : null },
        { kind: 'timeout', stage: 'running' },
      );
      // Charged at least the budget in CPU; the wall time may be far longer on a loaded machine.
      assert.ok((spin.timing?.runMs ?? 0) >= 50, JSON.stringify(spin.timing));
      assert.ok((spin.timing?.runWallMs ?? 0) >= 50, JSON.stringify(spin.timing));

      const t0 = performance.now();
      const block = await pool.run('block', '', 1e-6, 50);
      const wall = performance.now() - t0;
      assert.deepEqual(
        { kind: block.kind, stage: 'stage' in block ? block.stage : null },
        { kind: 'timeout', stage: 'wall-cap' },
      );
      assert.ok((block.timing?.runMs ?? Infinity) < 50, JSON.stringify(block.timing));
      assert.ok(wall >= 500, `cut off after ${wall.toFixed(0)} ms, before the 10 × 50 ms cap`);
      assert.equal(pool.terminations, 2);
      assert.equal(pool.wallCapTerminations, 1);
    } finally {
      await pool.close();
    }
  },
);

void test('with clock: wall, the budget is charged in wall time', async () => {
  const pool = new SymbolicPool({ workers: 1, spares: 0, entry: ENTRY, clock: 'wall' });
  try {
    await pool.ready();
    const block = await pool.run('block', '', 1e-6, 50);
    assert.deepEqual(
      { kind: block.kind, stage: 'stage' in block ? block.stage : null },
      { kind: 'timeout', stage: 'running' },
    );
    assert.equal(block.timing?.clock, 'wall');
    assert.ok((block.timing?.runMs ?? 0) >= 50, JSON.stringify(block.timing));
  } finally {
    await pool.close();
  }
});
