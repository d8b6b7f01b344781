// `pnpm bench:dp [--ranks 1,2] [--json FILE] [--steps N] [--preset tiny|small] [--zero]`: data-parallel
// training on this machine. For each rank count R it starts R processes (this file with --worker), each
// one rank of a Gloo group (rendezvous in a private Redis), and runs the learner group's update on the same
// synthetic SFT minibatches: token-balanced shares, gradients scaled by 1/(the minibatch's tokens), the
// all-reduce (or ZeRO-1 step), AdamW. R = 1 is the single learner's `trainStep`. Reports per R: the median
// step time, the median time in collectives, the all-reduce bandwidth of a parameter-sized buffer (algbw =
// bytes/time; busbw = algbw·2(R−1)/R, nccl-tests' definition), and the largest parameter difference after
// the steps against R = 1. Every rank runs with SPARK_THREADS=1, so R ranks use R cores. Unless
// --no-collective, it also runs the kernels' collective benchmark (`pnpm bench:collective --quick`, as a
// child process; `--torch` adds PyTorch's Gloo figure on the same machine) for each R > 1 and includes its
// bus-bandwidth rows.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Collective, DEFAULT_ADAMW, Model, type ScoredSequence } from '@spark/kernels';
import { testRedisUrl } from '@spark/runtime/testing';

import { microBatches, responseTokenCount, splitByTokens } from './batches.js';
import { prng } from './grpo.js';

const self = fileURLToPath(import.meta.url);

interface WorkerOut {
  rank: number;
  stepSeconds: number[];
  collectiveSeconds: number[];
  allreduceSeconds: number[];
  bytes: number;
  loss: number[];
}

interface Row {
  ranks: number;
  zero: boolean;
  preset: string;
  params: number;
  sequencesPerStep: number;
  tokensPerStep: number;
  stepMs: number;
  collectiveMs: number;
  allreduceMs: number;
  algbwGBs: number;
  busbwGBs: number;
  maxParamDiff: number;
  maxParamDiffRelative: number;
  /** ‖θ_R − θ_1‖₂ / ‖θ_1‖₂ */
  paramDiffNormRelative: number;
  lossDiffRelative: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : 0;
};

/** The same synthetic SFT minibatches on every rank: lengths 8…72 tokens, prompt 4. */
function minibatches(steps: number, perStep: number, vocab: number): ScoredSequence[][] {
  const rand = prng(1234);
  return Array.from({ length: steps }, () =>
    Array.from({ length: perStep }, () => {
      const len = 8 + Math.floor(rand() * 64);
      return {
        tokens: Uint32Array.from({ length: len }, () => 1 + Math.floor(rand() * (vocab - 1))),
        promptLen: 4,
      };
    }),
  );
}

async function worker(a: Record<string, string>): Promise<void> {
  const rank = Number(a.rank);
  const world = Number(a.world);
  const steps = Number(a.steps);
  const zero = a.zero === '1';
  const model = await Model.create(a.preset as 'tiny', 7);
  const data = minibatches(steps + 1, Number(a.seqs), model.config.vocabSize);
  const opt = { ...DEFAULT_ADAMW, lr: 1e-3 };
  const micro = 8;
  const out: WorkerOut = {
    rank,
    stepSeconds: [],
    collectiveSeconds: [],
    allreduceSeconds: [],
    bytes: 0,
    loss: [],
  };
  const c =
    world > 1
      ? await Collective.connect({
          redisUrl: a.redis as string,
          prefix: a.prefix as string,
          rank,
          worldSize: world,
          timeoutMs: 120_000,
          hostname: '127.0.0.1',
        })
      : null;
  // step 0 warms up (not timed)
  for (let s = 0; s <= steps; s++) {
    const mb = data[s] as ScoredSequence[];
    if (c) await c.barrier();
    const t0 = performance.now();
    let coll = 0;
    let loss: number;
    if (!c) {
      const st = await model.trainStep(microBatches(mb, micro), { kind: 'sft' }, opt);
      loss = st.loss;
    } else {
      const total = responseTokenCount(mb);
      const mine = splitByTokens(mb, world)[rank] ?? [];
      await model.zeroGrads();
      let lossSum = 0;
      let tokenSum = 0;
      for (const m of microBatches(mine, micro)) {
        const r = await model.accumulateGrads(m, { kind: 'sft' }, 1 / total);
        lossSum += r.lossSum;
        tokenSum += r.tokens;
      }
      const sums = Float64Array.of(lossSum, tokenSum);
      const t1 = performance.now();
      if (zero) await model.applyOptimizerSharded(c, opt);
      else {
        await model.allreduceGrads(c);
        coll += performance.now() - t1;
        await model.applyOptimizer(opt);
      }
      const t2 = performance.now();
      const red = await c.allreduceSumF64(sums);
      coll += (zero ? t2 - t1 : 0) + (performance.now() - t2);
      loss = (red[0] as number) / (red[1] as number);
    }
    if (s > 0) {
      out.stepSeconds.push((performance.now() - t0) / 1000);
      out.collectiveSeconds.push(coll / 1000);
      out.loss.push(loss);
    }
  }
  if (c) {
    // all-reduce of a parameter-sized float32 buffer
    const buf = new Float32Array(model.numParams).fill(1);
    out.bytes = buf.byteLength;
    for (let i = 0; i < 6; i++) {
      await c.barrier();
      const t = performance.now();
      await c.allreduceSum(buf);
      if (i > 0) out.allreduceSeconds.push((performance.now() - t) / 1000);
    }
    c.close();
  }
  if (rank === 0) {
    const p = await model.getParams();
    await writeFile(
      join(a.out as string, `params-${world}.f32`),
      Buffer.from(p.buffer, p.byteOffset, p.byteLength),
    );
  }
  await writeFile(join(a.out as string, `out-${world}-${rank}.json`), JSON.stringify(out));
  model.free();
}

async function runRanks(
  world: number,
  o: { redis: string; out: string; steps: number; seqs: number; preset: string; zero: boolean },
): Promise<WorkerOut[]> {
  const prefix = `bench-dp:${process.pid}:${world}:${o.zero ? 'z' : 'a'}`;
  const procs = Array.from({ length: world }, (_, rank) => {
    const args = ['--import', 'tsx', self, '--worker', '--rank', String(rank), '--world', String(world)];
    args.push('--redis', o.redis, '--prefix', prefix, '--out', o.out, '--steps', String(o.steps));
    args.push('--seqs', String(o.seqs), '--preset', o.preset, '--zero', o.zero ? '1' : '0');
    const child = spawn(process.execPath, args, {
      env: { ...process.env, SPARK_THREADS: '1' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    return new Promise<void>((resolve, reject) =>
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`rank ${rank} exited ${code}`)),
      ),
    );
  });
  await Promise.all(procs);
  return Promise.all(
    Array.from(
      { length: world },
      async (_, r) => JSON.parse(await readFile(join(o.out, `out-${world}-${r}.json`), 'utf8')) as WorkerOut,
    ),
  );
}

/** The kernels' collective benchmark (kernels/bench/collective.ts) as a child: its table and JSON. */
async function collectiveRows(
  ranks: number,
  torch: boolean,
): Promise<{ ranks: number; result: unknown; table: string }> {
  const bench = join(
    dirname(fileURLToPath(import.meta.resolve('@spark/kernels'))),
    '..',
    'bench',
    'collective.ts',
  );
  const dir = await mkdtemp(join(tmpdir(), 'spark-bench-coll-'));
  const json = join(dir, 'collective.json');
  try {
    const args = ['--import', 'tsx', bench, '--quick', '--ranks', String(ranks), '--json', json];
    if (!torch) args.push('--no-torch');
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let table = '';
    child.stdout.on('data', (d: Buffer) => (table += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    if (code !== 0) throw new Error(`bench:collective exited with ${code}`);
    return { ranks, result: JSON.parse(await readFile(json, 'utf8')) as unknown, table: table.trim() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      worker: { type: 'boolean', default: false },
      rank: { type: 'string' },
      world: { type: 'string' },
      redis: { type: 'string' },
      prefix: { type: 'string' },
      out: { type: 'string' },
      ranks: { type: 'string', default: '1,2' },
      json: { type: 'string' },
      steps: { type: 'string', default: '5' },
      seqs: { type: 'string', default: '32' },
      preset: { type: 'string', default: 'small' },
      zero: { type: 'string', default: '0' },
      'no-collective': { type: 'boolean', default: false },
      torch: { type: 'boolean', default: false },
    },
  });
  if (values.worker) return worker(values as unknown as Record<string, string>);
  const ranks = (values.ranks ?? '1,2').split(',').map((x) => Number(x.trim()));
  if (ranks.some((r) => !Number.isInteger(r) || r < 1 || r > 16)) {
    process.stderr.write(`bench:dp: --ranks takes a comma-separated list of 1…16, got "${values.ranks}"\n`);
    process.exit(2);
  }
  if (!ranks.includes(1)) ranks.unshift(1);
  const steps = Number(values.steps);
  const seqs = Number(values.seqs);
  if (
    !Number.isInteger(steps) ||
    steps < 1 ||
    steps > 1000 ||
    !Number.isInteger(seqs) ||
    seqs < 1 ||
    seqs > 4096
  ) {
    process.stderr.write('bench:dp: --steps must be 1…1000 and --seqs 1…4096\n');
    process.exit(2);
  }
  const preset = values.preset ?? 'small';
  const out = await mkdtemp(join(tmpdir(), 'spark-bench-dp-'));
  const redis = await testRedisUrl();
  const rows: Row[] = [];
  try {
    const o = { redis, out, steps, seqs, preset };
    const base = await runRanks(1, { ...o, zero: false });
    const p1 = new Float32Array((await readFile(join(out, 'params-1.f32'))).buffer.slice(0));
    const amax = p1.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const tokens = minibatches(steps + 1, seqs, 64)[1]?.reduce((n, s) => n + s.tokens.length, 0) ?? 0;
    const variants: [number, boolean][] = ranks.flatMap((r) =>
      r === 1
        ? [[1, false]]
        : [
            [r, false],
            [r, true],
          ],
    );
    for (const [r, zero] of variants) {
      const outs = r === 1 ? base : await runRanks(r, { ...o, zero });
      const pr = new Float32Array((await readFile(join(out, `params-${r}.f32`))).buffer.slice(0));
      let diff = 0;
      let d2 = 0;
      let a2 = 0;
      for (let i = 0; i < p1.length; i++) {
        const e = (p1[i] as number) - (pr[i] as number);
        diff = Math.max(diff, Math.abs(e));
        d2 += e * e;
        a2 += (p1[i] as number) ** 2;
      }
      const lead = outs[0] as WorkerOut;
      const l1 = base[0]?.loss.at(-1) ?? 0;
      const lr = lead.loss.at(-1) ?? 0;
      const ar = median(lead.allreduceSeconds);
      const algbw = ar > 0 ? lead.bytes / ar / 1e9 : 0;
      rows.push({
        ranks: r,
        zero,
        preset,
        params: p1.length,
        sequencesPerStep: seqs,
        tokensPerStep: tokens,
        stepMs: median(outs.map((w) => median(w.stepSeconds))) * 1000,
        collectiveMs: median(outs.map((w) => median(w.collectiveSeconds))) * 1000,
        allreduceMs: ar * 1000,
        algbwGBs: algbw,
        busbwGBs: (algbw * 2 * (r - 1)) / r,
        maxParamDiff: diff,
        maxParamDiffRelative: amax ? diff / amax : 0,
        paramDiffNormRelative: a2 ? Math.sqrt(d2 / a2) : 0,
        lossDiffRelative: Math.abs(l1 - lr) / Math.max(Math.abs(l1), 1e-12),
      });
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
  const collective: { ranks: number; result: unknown; table: string }[] = [];
  if (!values['no-collective']) {
    for (const r of ranks.filter((x) => x > 1))
      collective.push(await collectiveRows(r, values.torch ?? false));
  }
  const lines = [
    `bench:dp  preset ${preset}, ${seqs} sequences per step, ${steps} timed steps, 1 thread per rank`,
    'ranks zero  step ms  collective ms  all-reduce ms  algbw GB/s  busbw GB/s  max |Δθ| (/max|θ|)  ‖Δθ‖/‖θ‖',
    ...rows.map(
      (r) =>
        `${String(r.ranks).padStart(5)} ${(r.zero ? 'yes' : 'no').padEnd(4)} ${r.stepMs.toFixed(1).padStart(8)} ${r.collectiveMs.toFixed(2).padStart(14)} ${r.allreduceMs.toFixed(2).padStart(14)} ${r.algbwGBs.toFixed(3).padStart(11)} ${r.busbwGBs.toFixed(3).padStart(11)}  ${r.maxParamDiff.toExponential(2)} (${r.maxParamDiffRelative.toExponential(2)})  ${r.paramDiffNormRelative.toExponential(2)}`,
    ),
  ];
  for (const c of collective)
    lines.push('', `collective layer (pnpm bench:collective --quick --ranks ${c.ranks}):`, c.table);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json)
    await writeFile(
      values.json,
      `${JSON.stringify({ rows, collective: collective.map((c) => ({ ranks: c.ranks, ...(c.result as object) })) }, null, 2)}\n`,
    );
  process.exit(0);
}

await main();
