// The collective benchmark: Gloo all-reduce bus bandwidth through @spark/kernels' Collective (allreduceSum:
// the JS Float32Array is copied into native memory and the result handed back, as the API does), side by side
// with PyTorch's torch.distributed Gloo backend (kernels/bench/torch_gloo_allreduce.py, in-place all_reduce)
// on the same machine, N ranks as N processes over loopback TCP.
//
//   pnpm bench:collective [--ranks 2] [--quick] [--no-torch] [--json FILE]
//
// Bus bandwidth follows nccl-tests: algbw = bytes / time, busbw = algbw · 2(n − 1)/n. `benchCollective` is
// exported for `pnpm bench:dp` to include.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1 << 20;

export interface CollectiveBenchOptions {
  readonly ranks?: number;
  /** Message sizes in bytes (default 1, 4, 16, 64 MiB). */
  readonly sizes?: readonly number[];
  readonly iters?: number;
  /** Also run PyTorch's Gloo figure (needs /usr/bin/python3 with torch). */
  readonly torch?: boolean;
}

export interface CollectiveBenchRow {
  readonly bytes: number;
  /** seconds per all-reduce, @spark/kernels Collective */
  readonly sparkSeconds: number;
  /** GB/s (10^9 bytes/s) */
  readonly sparkBusBw: number;
  readonly torchSeconds: number | null;
  readonly torchBusBw: number | null;
  /** sparkBusBw / torchBusBw */
  readonly ratio: number | null;
}

export interface CollectiveBenchResult {
  readonly ranks: number;
  readonly iters: number;
  /** Collective.allreduceSum (copies the Float32Array in and hands a new one back) */
  readonly rows: readonly CollectiveBenchRow[];
  /** Model.allreduceGrads on the `small` preset (in place, no copy through JS) */
  readonly grads: CollectiveBenchRow;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Runs a command; resolves with its stdout's `<tag> <bytes> <seconds>` lines (tag RESULT, or GRADS as -bytes). */
function results(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Map<number, number>> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: env ?? process.env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', rej);
    p.once('exit', (code) => {
      if (code !== 0) return rej(new Error(`${cmd} exited with ${String(code)}`));
      const m = new Map<number, number>();
      for (const line of out.split('\n')) {
        const [tag, b, s] = line.trim().split(/\s+/);
        if (tag === 'RESULT') m.set(Number(b), Number(s));
        if (tag === 'GRADS') m.set(-Number(b), Number(s));
      }
      res(m);
    });
  });
}

const busBw = (bytes: number, seconds: number, n: number): number =>
  ((bytes / seconds) * (2 * (n - 1))) / n / 1e9;

export async function benchCollective(o: CollectiveBenchOptions = {}): Promise<CollectiveBenchResult> {
  const ranks = o.ranks ?? 2;
  const sizes = [...(o.sizes ?? [1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB])];
  const iters = o.iters ?? 10;
  const warmup = 2;
  const port = await freePort();
  const redis = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  try {
    const redisUrl = `redis://127.0.0.1:${port}`;
    const prefix = `spark:bench:collective:${process.pid}`;
    const worker = join(here, 'collective-rank.ts');
    const runs = Array.from({ length: ranks }, (_, rank) =>
      results(process.execPath, [
        '--import',
        'tsx',
        worker,
        JSON.stringify({ redisUrl, prefix, rank, worldSize: ranks, sizes, iters, warmup }),
      ]),
    );
    const spark = (await Promise.all(runs))[0] as Map<number, number>;
    const gradEntry = [...spark.keys()].find((k) => k < 0);
    if (gradEntry === undefined) throw new Error('no Model.allreduceGrads result');
    const gradBytes = -gradEntry;
    let torch: Map<number, number> | null = null;
    if (o.torch ?? true) {
      try {
        torch = await results('/usr/bin/python3', [
          join(here, 'torch_gloo_allreduce.py'),
          '--ranks',
          String(ranks),
          '--sizes',
          [...sizes, gradBytes].join(','),
          '--iters',
          String(iters),
          '--warmup',
          String(warmup),
        ]);
      } catch (err) {
        console.error(`bench: PyTorch Gloo figure unavailable (${(err as Error).message})`);
      }
    }
    const row = (bytes: number, s: number | undefined): CollectiveBenchRow => {
      if (s === undefined) throw new Error(`no result for ${bytes} bytes`);
      const t = torch?.get(bytes) ?? null;
      const sb = busBw(bytes, s, ranks);
      const tb = t === null ? null : busBw(bytes, t, ranks);
      return {
        bytes,
        sparkSeconds: s,
        sparkBusBw: sb,
        torchSeconds: t,
        torchBusBw: tb,
        ratio: tb === null ? null : sb / tb,
      };
    };
    const rows = sizes.map((bytes) => row(bytes, spark.get(bytes)));
    const grads = row(gradBytes, spark.get(-gradBytes));
    return { ranks, iters, rows, grads };
  } finally {
    redis.kill('SIGKILL');
  }
}

export function formatCollectiveBench(r: CollectiveBenchResult): string {
  const lines = [
    `all-reduce (float32 sum), ${r.ranks} ranks on this machine, ${r.iters} iterations per size; bus bandwidth in GB/s`,
    '| size | @spark/kernels (allreduceSum) | PyTorch gloo | ratio |',
    '| ---: | ---: | ---: | ---: |',
  ];
  const f = (v: number | null, d = 2): string => (v === null ? '—' : v.toFixed(d));
  for (const x of r.rows) {
    lines.push(`| ${x.bytes / MiB} MiB | ${f(x.sparkBusBw)} | ${f(x.torchBusBw)} | ${f(x.ratio)} |`);
  }
  const g = r.grads;
  lines.push(
    `| ${(g.bytes / MiB).toFixed(1)} MiB, Model.allreduceGrads (in place) | ${f(g.sparkBusBw)} | ${f(g.torchBusBw)} | ${f(g.ratio)} |`,
  );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const result = await benchCollective({
    ranks: Number(flag('--ranks') ?? 2),
    torch: !argv.includes('--no-torch'),
    ...(quick ? { sizes: [1 * MiB, 4 * MiB], iters: 3 } : {}),
  });
  console.log(formatCollectiveBench(result));
  const json = flag('--json');
  if (json !== undefined)
    writeFileSync(
      resolve(process.env.INIT_CWD ?? process.cwd(), json),
      JSON.stringify(result, null, 2) + '\n',
    );
}
