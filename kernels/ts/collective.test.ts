// The collective layer across real processes: each rank is a child process running collective.worker.ts (or
// this process itself), rendezvousing through a private redis-server (kernels may not import the workspace's
// test kit, so this file starts its own), connected by Gloo over TCP.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Collective, CollectiveError, InvalidInputError } from './index.js';

const here = dirname(fileURLToPath(import.meta.url));
const worker = join(here, 'collective.worker.ts');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves with the first stdout line matching `pred` (or rejects when the process exits first). */
function lineFrom(p: ChildProcess, pred: (line: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      const hit = lines.find(pred);
      if (hit !== undefined) {
        p.stdout?.off('data', onData);
        resolve(hit);
      }
    };
    p.stdout?.on('data', onData);
    p.once('exit', (code) => reject(new Error(`process exited (${String(code)}) before the expected line`)));
  });
}

let redis: ChildProcess;
let redisUrl = '';
let out = '';
let gen = 0;
const prefix = (): string => `spark:test:collective:${process.pid}:g${++gen}`;

function rank(scenario: string, p: string, r: number, worldSize: number, extra: object = {}): ChildProcess {
  const args = JSON.stringify({ scenario, redisUrl, prefix: p, rank: r, worldSize, out, ...extra });
  return spawn(process.execPath, ['--import', 'tsx', worker, args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function group(
  scenario: string,
  worldSize: number,
  extra: object = {},
): Promise<Record<string, unknown>[]> {
  const p = prefix();
  const procs = Array.from({ length: worldSize }, (_, r) => rank(scenario, p, r, worldSize, extra));
  const lines = await Promise.all(procs.map((c) => lineFrom(c, (l) => l.startsWith('{'))));
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

const f32 = (name: string, r: number): Float32Array => {
  const b = readFileSync(join(out, `${name}.${r}.f32`));
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

/** ‖a − b‖ / ‖b‖ (the FP32-rounding comparison of whole tensors). */
function relNormDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += ((a[i] as number) - (b[i] as number)) ** 2;
    n += (b[i] as number) ** 2;
  }
  return Math.sqrt(d / n);
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number)) / Math.max(Math.abs(b[i] as number), 1e-6);
    worst = Math.max(worst, d);
  }
  return worst;
}

void describe('Collective (Gloo) across processes', () => {
  before(async () => {
    const port = await freePort();
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await lineFrom(redis, (l) => l.includes('Ready to accept connections'));
    redisUrl = `redis://127.0.0.1:${port}`;
    out = mkdtempSync(join(tmpdir(), 'spark-collective-'));
  });
  after(() => {
    redis.kill('SIGKILL');
    rmSync(out, { recursive: true, force: true });
  });

  for (const n of [2, 3]) {
    void it(`all-reduce, broadcast and barrier are exact with ${n} processes (default hostname)`, async () => {
      const res = await group('basic', n);
      const tri = (n * (n + 1)) / 2;
      for (const r of res) {
        assert.deepEqual(r, {
          f32: [tri, 2 * tri, 3 * tri],
          f64: [Array.from({ length: n }, (_, i) => 0.5 * (i + 1)).reduce((a, b) => a + b), n * 2 ** 40],
          b: `from rank ${n - 1}`,
          empty: 0,
        });
      }
    });
  }

  void it('allreduceGrads on two models equals the sum of their gradients', async () => {
    await group('grads', 2, { hostname: '127.0.0.1' });
    const [b0, b1, a0, a1] = [f32('before', 0), f32('before', 1), f32('after', 0), f32('after', 1)];
    assert.ok(maxRelDiff(b0, b1) > 1e-3, 'the ranks computed different gradients');
    const sum = b0.map((x, i) => x + (b1[i] as number));
    assert.deepEqual(a0, sum);
    assert.deepEqual(a1, sum);
  });

  void it('applyOptimizerSharded equals allreduceGrads + applyOptimizer after 3 steps (2 and 3 ranks)', async () => {
    for (const n of [2, 3]) {
      const res = await group('sharded', n, { hostname: '127.0.0.1' });
      let offset = 0;
      for (let r = 0; r < n; r++) {
        const x = res[r] as {
          norms: [number, number][];
          shardOffset: number;
          shardLen: number;
          step: number;
        };
        assert.equal(x.step, 3);
        assert.equal(x.shardOffset, offset, 'shards are contiguous in rank order');
        offset += x.shardLen;
        for (const [a, b] of x.norms) assert.ok(Math.abs(a - b) <= 1e-6 * a, `norms ${a} vs ${b}`);
        assert.ok(x.norms[0]![0] > 0.5, 'clipping was active');
        // 2 ranks: both paths sum a + b, so they agree bitwise; 3 ranks: the ring all-reduce and the
        // halving-doubling reduce-scatter add in different orders (FP32 rounding, which AdamW's 1/√v
        // amplifies where the summed gradient nearly cancels), hence a whole-tensor comparison.
        const d = relNormDiff(f32('sharded', r), f32('plain', r));
        assert.ok(d <= 1e-6, `rank ${r} of ${n}: params differ by ${d} (relative norm)`);
        if (n === 2) assert.deepEqual(f32('sharded', r), f32('plain', r));
        const dm = relNormDiff(f32('m', r), f32('mref', r));
        assert.ok(dm <= 1e-5, `gathered moments differ by ${dm} from the unsharded ones`);
        assert.deepEqual(f32('sharded', r), f32('sharded', 0), 'every rank holds the same parameters');
      }
      assert.equal(offset, f32('plain', 0).length, 'the shards cover the parameters');
    }
  });

  void it('a rank that never joins: COLLECTIVE_TIMEOUT naming it, within the timeout', async () => {
    const t0 = Date.now();
    await assert.rejects(
      Collective.connect({
        redisUrl,
        prefix: prefix(),
        rank: 1,
        worldSize: 3,
        timeoutMs: 800,
        hostname: '127.0.0.1',
      }),
      (err: unknown) => {
        assert.ok(err instanceof CollectiveError);
        assert.equal(err.code, 'COLLECTIVE_TIMEOUT');
        assert.match(err.message, /ranks 0, 2 did not join/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 5000);
  });

  void it('bad options are InvalidInputErrors; an unreachable Redis is COLLECTIVE_STORE', async () => {
    const base = {
      redisUrl,
      prefix: prefix(),
      rank: 0,
      worldSize: 1,
      timeoutMs: 1000,
      hostname: '127.0.0.1',
    };
    await assert.rejects(Collective.connect({ ...base, rank: 1 }), InvalidInputError);
    await assert.rejects(Collective.connect({ ...base, redisUrl: 'http://x' }), InvalidInputError);
    await assert.rejects(Collective.connect({ ...base, timeoutMs: 0 }), InvalidInputError);
    const port = await freePort();
    await assert.rejects(Collective.connect({ ...base, redisUrl: `redis://127.0.0.1:${port}` }), {
      code: 'COLLECTIVE_STORE',
    });
    const solo = await Collective.connect(base);
    assert.deepEqual([...(await solo.allreduceSum(Float32Array.of(1, 2)))], [1, 2]);
    await assert.rejects(solo.broadcastBytes(null, 0), InvalidInputError);
    const queued = solo.barrier();
    const later = solo.barrier();
    solo.close();
    solo.close();
    await assert.rejects(later, { code: 'COLLECTIVE_CLOSED' });
    await queued.catch(() => undefined);
    await assert.rejects(solo.allreduceSum(Float32Array.of(1)), { code: 'COLLECTIVE_CLOSED' });
  });

  void it('a rank killed mid-collective: the survivor rejects with a named code within the timeout, the group re-forms', async () => {
    const timeoutMs = 5000;
    const p1 = prefix();
    const child = rank('spin', p1, 1, 2, { hostname: '127.0.0.1' });
    const c = await Collective.connect({
      redisUrl,
      prefix: p1,
      rank: 0,
      worldSize: 2,
      timeoutMs,
      hostname: '127.0.0.1',
    });
    const ready = lineFrom(child, (l) => l === 'ready');
    const x = new Float32Array(1 << 20).fill(1);
    const loop = (async (): Promise<unknown> => {
      for (;;) {
        try {
          await c.allreduceSum(x);
        } catch (err) {
          return err;
        }
      }
    })();
    await ready;
    await c.allreduceSum(new Float32Array(0)).catch(() => undefined); // a call queued behind the loop's
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const err = await loop;
    const took = Date.now() - killedAt;
    assert.ok(err instanceof CollectiveError, String(err));
    assert.ok(['COLLECTIVE_PEER_LOST', 'COLLECTIVE_TIMEOUT'].includes(err.code), err.code);
    assert.ok(took < timeoutMs + 2000, `failed after ${took} ms`);
    await assert.rejects(c.barrier(), { code: 'COLLECTIVE_BROKEN' });
    c.close();

    // A new generation re-forms with a replacement rank 1.
    const p2 = prefix();
    const child2 = rank('basic', p2, 1, 2, { hostname: '127.0.0.1' });
    const c2 = await Collective.connect({
      redisUrl,
      prefix: p2,
      rank: 0,
      worldSize: 2,
      timeoutMs,
      hostname: '127.0.0.1',
    });
    const line = lineFrom(child2, (l) => l.startsWith('{'));
    // rank 0 mirrors the worker's 'basic' sequence
    assert.deepEqual([...(await c2.allreduceSum(Float32Array.of(1, 2, 3)))], [3, 6, 9]);
    await c2.allreduceSumF64(Float64Array.from([0.5, 2 ** 40]));
    assert.equal(new TextDecoder().decode(await c2.broadcastBytes(null, 1)), 'from rank 1');
    await c2.broadcastBytes(new Uint8Array(0), 0);
    await c2.barrier();
    assert.match(await line, /"b":"from rank 1"/);
    c2.close();
  });
});
