// The CPU clock behind the symbolic budget (cpuclock.ts, pool.ts): /proc parsing, and the pool charging a
// job its worker thread's CPU time — a spinning job is cut off at the budget, a job blocked without using
// CPU once it has been blocked for the blocked cap (stage `blocked`), any job at the absolute wall bound
// (stage `wall-cap`), a starved one never (waiting for a CPU is not blocking), a quick one is charged
// little CPU. The stand-in worker
// (fixtures/test-worker.mjs) starts in milliseconds, unlike the engine's.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import {
  currentThreadId,
  openThreadClock,
  parseSchedstat,
  parseSchedstatBytes,
  parseSchedstatWait,
  parseStat,
  parseStatRunnable,
  threadCpuMs,
} from '../cpuclock.js';
import { SymbolicPool } from '../pool.js';

const onLinux = existsSync('/proc/thread-self');
const ENTRY = new URL('./fixtures/test-worker.mjs', import.meta.url);

void test('parses schedstat and stat', () => {
  assert.equal(parseSchedstat('2824984185 10252211723 1249\n'), 2824.984185);
  assert.equal(parseSchedstat(''), null);
  assert.equal(parseSchedstat('garbage'), null);
  assert.equal(parseSchedstatWait('2824984185 10252211723 1249\n'), 10252.211723);
  assert.equal(parseSchedstatWait('12 34'), null);
  // A command name with spaces and parentheses; utime 280 and stime 1 ticks (fields 14, 15).
  const stat =
    '10943 (a b) (c)) R 10928 10928 10351 0 -1 4194304 102 0 0 0 280 1 0 0 20 0 1 0 3811299 3133440 418\n';
  assert.equal(parseStat(stat), 2810);
  assert.equal(parseStat(stat, 1000), 281);
  assert.equal(parseStat('no parenthesis'), null);
  assert.equal(parseStat('1 (x) R 1 2'), null);
  assert.equal(parseStatRunnable(stat), true);
  assert.equal(parseStatRunnable(stat.replace(') R ', ') S ')), false);
  assert.equal(parseStatRunnable('no parenthesis'), null);
  // The byte parser the pool reads with agrees with the text parsers, and refuses what they refuse.
  const bytes = (t: string): [Buffer, number] => [Buffer.from(t, 'latin1'), t.length];
  assert.deepEqual(parseSchedstatBytes(...bytes('2824984185 10252211723 1249\n')), {
    cpuMs: 2824.984185,
    waitMs: 10252.211723,
  });
  for (const bad of ['', 'garbage', '12 34', '12  34 5', '-1 2 3', '12 x 3']) {
    assert.equal(parseSchedstatBytes(...bytes(bad)), null, bad);
  }
  // Only the bytes read count, not what an earlier, longer read left in the buffer.
  assert.equal(parseSchedstatBytes(Buffer.from('1 2 3\n', 'latin1'), 3), null);
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
    assert.ok((clock.readWait() ?? -1) >= 0);
    assert.equal(clock.runnable(), true);
    // One sample carries both fields, in step with the separate reads around it.
    const s = clock.sample();
    const c = clock.read();
    assert.ok(s !== null && c !== null && s.cpuMs >= b && c >= s.cpuMs, `${b} <= ${s?.cpuMs} <= ${c}`);
    assert.ok(s.waitMs !== null && s.waitMs >= 0);
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
  'the pool charges CPU time: spin hits the budget, block the blocked cap',
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
        { kind: 'timeout', stage: 'blocked' },
      );
      assert.ok((block.timing?.runMs ?? Infinity) < 50, JSON.stringify(block.timing));
      assert.ok(wall >= 500, `cut off after ${wall.toFixed(0)} ms, before the 10 × 50 ms cap`);
      assert.equal(pool.terminations, 2);
      assert.equal(pool.blockedTerminations, 1);
      assert.equal(pool.wallCapTerminations, 0);
    } finally {
      await pool.close();
    }
  },
);

void test(
  'a job is not charged what its thread did while idle before it',
  { skip: !onLinux && 'no /proc' },
  async () => {
    // The worker replies, then uses 200 ms of CPU on its own (as a garbage collection after a job would)
    // and writes a file when done. The next job, handed over after that, is a quick one: charged from the
    // previous reply's reading it would cost over 200 ms; it must cost what it used.
    const pool = new SymbolicPool({ workers: 1, spares: 0, entry: ENTRY, wallCapFactor: 1_000 });
    const done = join(mkdtempSync(join(tmpdir(), 'spark-cpuclock-')), 'tail-done');
    try {
      await pool.ready();
      const first = await pool.run(`tail:200:${done}`, '', 1e-6, 1_000);
      assert.equal(first.kind, 'done', JSON.stringify(first));
      // until the worker's tail is over (this package stands below @spark/runtime and its test kit's until())
      const waitUntil = performance.now() + 30_000;
      while (!existsSync(done)) {
        assert.ok(performance.now() < waitUntil, "the worker's tail did not end in 30 s");
        await new Promise((r) => setTimeout(r, 5));
      }
      const next = await pool.run('quick', '', 1e-6, 1_000);
      assert.equal(next.kind, 'done', JSON.stringify(next));
      assert.ok((next.timing?.runMs ?? Infinity) < 50, JSON.stringify(next.timing));
    } finally {
      await pool.close();
      rmSync(dirname(done), { recursive: true, force: true });
    }
  },
);

void test('the absolute wall bound ends any job', { skip: !onLinux && 'no /proc' }, async () => {
  const pool = new SymbolicPool({
    workers: 1,
    spares: 0,
    entry: ENTRY,
    wallCapFactor: 1_000,
    maxRunWallFactor: 1_000,
  });
  try {
    await pool.ready();
    const t0 = performance.now();
    const block = await pool.run('block', '', 1e-6, 1);
    const wall = performance.now() - t0;
    assert.deepEqual(
      { kind: block.kind, stage: 'stage' in block ? block.stage : null },
      { kind: 'timeout', stage: 'wall-cap' },
    );
    assert.ok(wall >= 1_000, `cut off after ${wall.toFixed(0)} ms, before the 1000 × 1 ms bound`);
    assert.equal(pool.wallCapTerminations, 1);
  } finally {
    await pool.close();
  }
});

void test(
  'a starved job is not cut off: waiting for a CPU is not blocking',
  { skip: !onLinux && 'no /proc' },
  async () => {
    // 100 ms of CPU with a budget of 150 ms and a blocked cap of 1 × 150 ms, while twice as many busy
    // threads as cores compete: the job takes far longer than 150 ms of wall time, nearly all of it
    // waiting for a CPU. Charged in wall time (or with run-queue time counted as blocked) it would be cut off.
    const pool = new SymbolicPool({ workers: 1, spares: 0, entry: ENTRY, wallCapFactor: 1 });
    const burners = Array.from(
      { length: 2 * availableParallelism() },
      () => new Worker('for (;;);', { eval: true }),
    );
    const online = Promise.all(burners.map((w) => new Promise((resolve) => w.once('online', resolve))));
    try {
      await pool.ready();
      await online;
      const out = await pool.run('cpu:100', '', 1e-6, 150);
      assert.equal(out.kind, 'done', JSON.stringify(out));
      const t = out.timing;
      assert.ok(t !== undefined && t.runMs >= 100 && t.runMs < 150, JSON.stringify(t));
      // The competition really starved it (else this test would prove nothing).
      assert.ok(t.runWallMs > 150, `not starved: ${JSON.stringify(t)}`);
      assert.equal(pool.terminations, 0);
    } finally {
      await Promise.all(burners.map((w) => w.terminate()));
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
