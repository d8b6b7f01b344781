// Weight-transfer benchmark: the learner runs as its own process (src/main.ts, PolicyService on 127.0.0.1,
// real Redis) as in a cluster, and this process pulls a job's policy with `fetchPolicy` over loopback,
// verifying size and sha256 as samplers do. Side by side in one run: throughput per chunk size (wall clock,
// and per CPU-second of learner + sampler, read from /proc), against the SHA-256 of the same buffer alone.
// One learner process per chunk size runs throughout, and the transfers are interleaved (one transfer of
// each size in turn, in a rotated order), so that load from elsewhere on a shared machine falls on every
// size alike; the figures are medians over the `--reps` transfers of each size, with their spread (the
// fastest, median and slowest transfer of each size).
// Target (issue 5): ≥ 200 MB/s for the small preset with the default chunk size (the learner's
// DEFAULT_POLICY_CHUNK_BYTES).
//
//   pnpm --filter @spark/learner run bench [--preset small] [--reps 16] [--json FILE]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { encodeJobSpec, fetchPolicy, jobKeys } from '@spark/contract';
import { JobSpec } from '@spark/protocol';
import { connectRedis, uniquePrefix } from '@spark/runtime/redis';
import { testRedisUrl } from '@spark/runtime/testing';

import { DEFAULT_POLICY_CHUNK_BYTES, whenRedisReady } from './index.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    reps: { type: 'string', default: '16' },
    json: { type: 'string' },
  },
});
const reps = Math.min(1000, Math.max(3, Number(values.reps) || 16));
const KiB = 1024;
const chunkSizes = [128 * KiB, 256 * KiB, 512 * KiB, 1024 * KiB, 4096 * KiB];
const here = dirname(fileURLToPath(import.meta.url));
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Row {
  what: string;
  chunkBytes: number | null;
  /** Wall-clock throughput of the median transfer. */
  mbPerSecond: number;
  msPerTransfer: number;
  /** The fastest single transfer (the least disturbed by other load on a shared machine). */
  bestMbPerSecond: number;
  /** The spread over the repeats: the slowest, median and fastest transfer, in milliseconds. */
  msMin: number;
  msMedian: number;
  msMax: number;
  /** The slowest single transfer's throughput (the most disturbed). */
  worstMbPerSecond: number;
  /** Mean CPU time of learner + sampler per transfer, and MB per CPU-second. */
  cpuMsPerTransfer: number;
  mbPerCpuSecond: number;
  /** The learner's share of the CPU time per transfer (serving), the rest is the sampler (receiving, sha256). */
  learnerCpuMsPerTransfer: number | null;
}

/** Per-transfer measurements of one chunk size (null: the SHA-256 floor). */
interface Samples {
  wallMs: number[];
  cpuMs: number;
  learnerCpuMs: number | null;
}

function row(what: string, chunkBytes: number | null, bytes: number, m: Samples): Row {
  const sorted = [...m.wallMs].sort((a, b) => a - b);
  const ms = sorted[Math.floor((sorted.length - 1) / 2)] as number;
  const best = sorted[0] as number;
  const worst = sorted[sorted.length - 1] as number;
  const c = m.cpuMs / m.wallMs.length;
  return {
    what,
    chunkBytes,
    mbPerSecond: bytes / 1e6 / (ms / 1000),
    msPerTransfer: ms,
    bestMbPerSecond: bytes / 1e6 / (best / 1000),
    msMin: best,
    msMedian: ms,
    msMax: worst,
    worstMbPerSecond: bytes / 1e6 / (worst / 1000),
    cpuMsPerTransfer: c,
    mbPerCpuSecond: bytes / 1e6 / (c / 1000),
    learnerCpuMsPerTransfer: m.learnerCpuMs === null ? null : m.learnerCpuMs / m.wallMs.length,
  };
}

/** utime + stime of a process in milliseconds (Linux /proc), or NaN elsewhere. */
async function procCpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function startLearnerProcess(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; grpcPort: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'main.ts')], {
    cwd: join(here, '..'),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const grpcPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('learner: no READY line within 120 s')), 120_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line.slice(6)) as { grpcPort: number }).grpcPort);
    });
    child.once('exit', (code) => reject(new Error(`learner exited with ${code}`)));
  });
  return { child, grpcPort };
}

const url = await testRedisUrl();
const redis = connectRedis(url);
await whenRedisReady(redis);
const dir = await mkdtemp(join(tmpdir(), 'spark-bench-weights-'));
interface Server {
  chunkBytes: number;
  prefix: string;
  child: ChildProcess;
  address: string;
  samples: Samples;
}
const servers: Server[] = [];
const floor: Samples = { wallMs: [], cpuMs: 0, learnerCpuMs: null };
let bytes = 0;
try {
  const opts = { token: null, defaultDeadlineMs: 120_000 };
  let sha256 = '';
  let params: Float32Array | null = null;
  for (const chunkBytes of chunkSizes) {
    const prefix = uniquePrefix('bench-weights');
    const spec = JobSpec.fromPartial({ model: values.preset, seed: 1, checkpointDir: join(dir, 'ckpt') });
    await redis.hset(jobKeys.job(prefix, 'bench'), { spec: encodeJobSpec(spec), state: 'RUNNING' });
    await redis.sadd(jobKeys.active(prefix), 'bench');
    const { child, grpcPort } = await startLearnerProcess({
      SPARK_REDIS_URL: url,
      SPARK_REDIS_PREFIX: prefix,
      SPARK_LOCAL_MODE: '1',
      SPARK_DATA_DIR: dir,
      SPARK_LOG_LEVEL: 'warn',
      SPARK_POLICY_CHUNK_BYTES: String(chunkBytes),
    });
    const server: Server = {
      chunkBytes,
      prefix,
      child,
      address: `127.0.0.1:${grpcPort}`,
      samples: { wallMs: [], cpuMs: 0, learnerCpuMs: 0 },
    };
    servers.push(server);
    const first = await fetchPolicy(server.address, 'bench', 0, opts); // loads the model; warms both ends
    if (sha256 && first.sha256 !== sha256) throw new Error('the learners hold different policies');
    sha256 = first.sha256;
    params = first.params;
    bytes = first.bytes;
  }
  const p = params as Float32Array;
  const buf = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  for (let i = 0; i < reps; i++) {
    const k = i % servers.length;
    for (const s of [...servers.slice(k), ...servers.slice(0, k)]) {
      const pid = s.child.pid as number;
      const l0 = await procCpuMs(pid);
      const c0 = selfCpuMs();
      const t0 = performance.now();
      const got = await fetchPolicy(s.address, 'bench', 0, opts);
      const wall = performance.now() - t0;
      const l1 = await procCpuMs(pid);
      if (got.sha256 !== sha256) throw new Error('checksum mismatch');
      s.samples.wallMs.push(wall);
      s.samples.cpuMs += selfCpuMs() - c0 + (l1 - l0);
      s.samples.learnerCpuMs = (s.samples.learnerCpuMs ?? 0) + (l1 - l0);
    }
    const h0 = performance.now();
    const hc = selfCpuMs();
    createHash('sha256').update(buf).digest('hex');
    floor.wallMs.push(performance.now() - h0);
    floor.cpuMs += selfCpuMs() - hc;
  }
} finally {
  for (const s of servers) {
    s.child.kill('SIGTERM');
    if (s.child.exitCode === null) await new Promise((r) => s.child.once('exit', r));
    await redis.del(
      jobKeys.job(s.prefix, 'bench'),
      jobKeys.active(s.prefix),
      jobKeys.policy(s.prefix, 'bench'),
    );
  }
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
}

const rows: Row[] = [
  row('sha256 only (floor)', null, bytes, floor),
  ...servers.map((s) => row('GetPolicy + verify (2 processes)', s.chunkBytes, bytes, s.samples)),
];
const ref = rows.find((r) => r.chunkBytes === DEFAULT_POLICY_CHUNK_BYTES)?.mbPerSecond ?? 0;
console.log(
  `weight transfer, preset ${values.preset}: ${(bytes / 1e6).toFixed(2)} MB per policy, ${reps} interleaved transfers per chunk size (medians, with the spread: min / median / max over the transfers), loopback, one learner process per size`,
);
console.log(
  `${cpus().length} CPUs, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  '| what | chunk | MB/s (wall, median) | MB/s worst / best transfer | ms / transfer min / median / max | CPU ms / transfer (both ends) | of which learner | MB per CPU-s | wall vs default chunks |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const chunk =
    r.chunkBytes === null
      ? '—'
      : `${r.chunkBytes / 1024} KiB${r.chunkBytes === DEFAULT_POLICY_CHUNK_BYTES ? ' (default)' : ''}`;
  console.log(
    `| ${r.what} | ${chunk} | ${r.mbPerSecond.toFixed(0)} | ${r.worstMbPerSecond.toFixed(0)} / ${r.bestMbPerSecond.toFixed(0)} | ${r.msMin.toFixed(1)} / ${r.msMedian.toFixed(1)} / ${r.msMax.toFixed(1)} | ${r.cpuMsPerTransfer.toFixed(1)} | ${r.learnerCpuMsPerTransfer === null ? '—' : r.learnerCpuMsPerTransfer.toFixed(1)} | ${r.mbPerCpuSecond.toFixed(0)} | ${(r.mbPerSecond / ref).toFixed(2)}× |`,
  );
}
console.log(
  `target ≥ 200 MB/s wall (${DEFAULT_POLICY_CHUNK_BYTES / 1024} KiB chunks, the default): ${ref >= 200 ? 'met' : 'NOT met'}`,
);
if (values.json) {
  await writeFile(
    values.json,
    JSON.stringify(
      {
        preset: values.preset,
        bytes,
        reps,
        defaultChunkBytes: DEFAULT_POLICY_CHUNK_BYTES,
        cpus: cpus().length,
        loadavg: loadavg(),
        rows,
        samples: Object.fromEntries(servers.map((x) => [x.chunkBytes, x.samples.wallMs])),
        targetMbPerSecond: 200,
      },
      null,
      2,
    ) + '\n',
  );
}
process.exit(0);
