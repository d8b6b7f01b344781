// One rank of the collective benchmark (bench/collective.ts): joins the group, times allreduceSum at each size
// (barriers around the timed loop, as nccl-tests does), then Model.allreduceGrads on the `small` preset; rank 0
// prints `RESULT <bytes> <seconds>` lines and one `GRADS <bytes> <seconds>` line.
import { Collective, Model } from '../ts/index.js';

interface Args {
  redisUrl: string;
  prefix: string;
  rank: number;
  worldSize: number;
  sizes: number[];
  iters: number;
  warmup: number;
}

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const c = await Collective.connect({
  redisUrl: a.redisUrl,
  prefix: a.prefix,
  rank: a.rank,
  worldSize: a.worldSize,
  timeoutMs: 120_000,
  hostname: '127.0.0.1',
});
for (const bytes of a.sizes) {
  const x = new Float32Array(bytes / 4).fill(1);
  for (let i = 0; i < a.warmup; i++) await c.allreduceSum(x);
  await c.barrier();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < a.iters; i++) await c.allreduceSum(x);
  await c.barrier();
  const dt = Number(process.hrtime.bigint() - t0) / 1e9 / a.iters;
  if (c.rank === 0) console.log(`RESULT ${bytes} ${dt.toFixed(9)}`);
}
// The in-place path: Model.allreduceGrads on the `small` preset's gradient buffer (no copy through JS).
const model = await Model.create('small', 1);
await model.zeroGrads();
for (let i = 0; i < a.warmup; i++) await model.allreduceGrads(c);
await c.barrier();
const t0 = process.hrtime.bigint();
for (let i = 0; i < a.iters; i++) await model.allreduceGrads(c);
await c.barrier();
const dt = Number(process.hrtime.bigint() - t0) / 1e9 / a.iters;
if (c.rank === 0) console.log(`GRADS ${model.numParams * 4} ${dt.toFixed(9)}`);
model.free();
c.close();
