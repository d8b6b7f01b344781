// One rank of a collective test group, run as its own process by collective.test.ts:
//   node --import tsx collective.worker.ts '<json>'   with { scenario, redisUrl, prefix, rank, worldSize, out }
// It prints one JSON line of results on stdout (and 'ready' lines where the test waits for a state).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Collective, DEFAULT_ADAMW, Model } from './index.js';
import type { GrpoSequence } from './index.js';

interface Args {
  scenario: 'basic' | 'grads' | 'sharded' | 'spin';
  redisUrl: string;
  prefix: string;
  rank: number;
  worldSize: number;
  out: string;
  hostname?: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;

/** A deterministic SFT-style batch of rank `rank` (different tokens per rank). */
function rankBatch(rank: number): GrpoSequence[] {
  return [0, 1].map((i) => {
    const tokens = Uint32Array.from(
      { length: 12 + i * 3 + rank },
      (_, t) => (t * 7 + rank * 13 + i * 5) % 128,
    );
    const r = tokens.length - 4;
    return { tokens, promptLen: 4, advantage: 0, oldLogprobs: new Float32Array(r), refLogprobs: null };
  });
}

const TOKENS_PER_RANK = (rank: number): number => 8 + rank + (11 + rank);

const opt = { ...DEFAULT_ADAMW, lr: 1e-2, weightDecay: 0.1, maxGradNorm: 0.5 };

async function main(): Promise<void> {
  const c = await Collective.connect({
    redisUrl: args.redisUrl,
    prefix: args.prefix,
    rank: args.rank,
    worldSize: args.worldSize,
    timeoutMs: 20_000,
    ...(args.hostname === undefined ? {} : { hostname: args.hostname }),
  });
  const write = (name: string, x: Float32Array): void =>
    writeFileSync(
      join(args.out, `${name}.${args.rank}.f32`),
      new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    );
  switch (args.scenario) {
    case 'basic': {
      const f32 = await c.allreduceSum(Float32Array.from([1, 2, 3], (x) => x * (c.rank + 1)));
      const f64 = await c.allreduceSumF64(Float64Array.from([0.5 * (c.rank + 1), 2 ** 40]));
      const root = c.worldSize - 1;
      const b = await c.broadcastBytes(
        c.rank === root ? new TextEncoder().encode(`from rank ${root}`) : null,
        root,
      );
      const empty = await c.broadcastBytes(c.rank === 0 ? new Uint8Array(0) : null, 0);
      await c.barrier();
      console.log(
        JSON.stringify({ f32: [...f32], f64: [...f64], b: new TextDecoder().decode(b), empty: empty.length }),
      );
      break;
    }
    case 'grads': {
      const m = await Model.create('tiny', 3);
      await m.zeroGrads();
      await m.accumulateGrads(rankBatch(c.rank), { kind: 'sft' }, 1);
      write('before', await m.getGrads());
      await m.allreduceGrads(c);
      write('after', await m.getGrads());
      console.log(JSON.stringify({ ok: true }));
      break;
    }
    case 'sharded': {
      // Both data-parallel paths on one rank: all-reduce + applyOptimizer, and ZeRO-1.
      const total = Array.from({ length: c.worldSize }, (_, r) => TOKENS_PER_RANK(r)).reduce((a, b) => a + b);
      const plain = await Model.create('tiny', 3);
      const sharded = await Model.create('tiny', 3);
      const norms: [number, number][] = [];
      for (let step = 0; step < 3; step++) {
        for (const m of [plain, sharded]) {
          await m.zeroGrads();
          await m.accumulateGrads(rankBatch(c.rank), { kind: 'sft' }, 1 / total);
        }
        await plain.allreduceGrads(c);
        const a = await plain.applyOptimizer(opt);
        const b = await sharded.applyOptimizerSharded(c, opt);
        norms.push([a, b]);
      }
      const shard = await sharded.getOptimizerShard();
      await sharded.gatherOptimizerState(c);
      const full = await sharded.getOptimizerState();
      const ref = await plain.getOptimizerState();
      write('plain', await plain.getParams());
      write('sharded', await sharded.getParams());
      write('m', full.m);
      write('mref', ref.m);
      console.log(
        JSON.stringify({ norms, shardOffset: shard.offset, shardLen: shard.m.length, step: full.step }),
      );
      break;
    }
    case 'spin': {
      // Loops all-reduces until the group fails (the test kills a rank).
      const x = new Float32Array(1 << 20).fill(1);
      console.log('ready');
      for (;;) await c.allreduceSum(x);
    }
  }
  c.close();
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  console.log(JSON.stringify({ error: e.code ?? 'unknown', message: e.message }));
  process.exitCode = 1;
});
