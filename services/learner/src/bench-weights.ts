// Weight-transfer benchmark: the learner runs as its own process (src/main.ts, PolicyService on 127.0.0.1,
// real Redis) as in a cluster, and this process pulls a job's policy with `fetchPolicy` over loopback,
// verifying size and sha256 as samplers do. Side by side in one run: throughput per chunk size (wall clock,
// and per CPU-second of learner + sampler, read from /proc), against the SHA-256 of the same buffer alone.
// Target (issue 5): ≥ 200 MB/s for the small preset with the default chunk size (the learner's
// DEFAULT_POLICY_CHUNK_BYTES). `--rounds N` repeats the whole sweep N times with the chunk sizes in a
// rotated order each round and reports the median per size, so that a machine whose load changes during
// the run does not favour whichever size ran in a quiet moment.
//
//   pnpm --filter @spark/learner run bench [--preset small] [--reps 8] [--rounds 1] [--json FILE]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { encodeJobSpec, fetchPolicy, jobKeys } from '@spark/common/cluster';
import { JobSpec } from '@spark/common/proto';
import { connectRedis, uniquePrefix } from '@spark/common/redis';
import { testRedisUrl } from '@spark/common/testing';

import { DEFAULT_POLICY_CHUNK_BYTES, whenRedisReady } from './index.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    reps: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});
const reps = Math.max(2, Number(values.reps));
const rounds = Math.min(20, Math.max(1, Number(values.rounds)));
const KiB = 1024;
const chunkSizes = [128 * KiB, 256 * KiB, 512 * KiB, 1024 * KiB, 4096 * KiB];
const here = dirname(fileURLToPath(import.meta.url));
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Row {
  what: string;
  chunkBytes: number | null;
  /** Wall-clock throughput. */
  mbPerSecond: number;
  msPerTransfer: number;
  /** CPU time of learner + sampler per transfer, and MB per CPU-second. */
  cpuMsPerTransfer: number;
  mbPerCpuSecond: number;
  /** The learner's share of the CPU time per transfer (serving), the rest is the sampler (receiving, sha256). */
  learnerCpuMsPerTransfer: number | null;
}

function row(
  what: string,
  chunkBytes: number | null,
  bytes: number,
  wallMs: number,
  cpuMs: number,
  learnerCpuMs: number | null = null,
): Row {
  const ms = wallMs / reps;
  const c = cpuMs / reps;
  return {
    learnerCpuMsPerTransfer: learnerCpuMs === null ? null : learnerCpuMs / reps,
    what,
    chunkBytes,
    mbPerSecond: bytes / 1e6 / (ms / 1000),
    msPerTransfer: ms,
    cpuMsPerTransfer: c,
    mbPerCpuSecond: bytes / 1e6 / (c / 1000),
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
/** Every measured row of every round, by chunk size (null: the SHA-256 floor). */
const samples = new Map<number | null, Row[]>();
const keep = (r: Row) => samples.set(r.chunkBytes, [...(samples.get(r.chunkBytes) ?? []), r]);
let bytes = 0;
try {
  for (let round = 0; round < rounds; round++) {
    const order = [
      ...chunkSizes.slice(round % chunkSizes.length),
      ...chunkSizes.slice(0, round % chunkSizes.length),
    ];
    for (const chunkBytes of order) {
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
      try {
        const address = `127.0.0.1:${grpcPort}`;
        const opts = { token: null, defaultDeadlineMs: 120_000 };
        const first = await fetchPolicy(address, 'bench', 0, opts); // loads the model; warms both ends
        bytes = first.bytes;
        const pid = child.pid as number;
        const l0 = await procCpuMs(pid);
        const c0 = selfCpuMs() + l0;
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) {
          const got = await fetchPolicy(address, 'bench', 0, opts);
          if (got.sha256 !== first.sha256) throw new Error('checksum mismatch');
        }
        const wall = performance.now() - t0;
        const l1 = await procCpuMs(pid);
        const cpu = selfCpuMs() + l1 - c0;
        keep(row('GetPolicy + verify (2 processes)', chunkBytes, bytes, wall, cpu, l1 - l0));
        if (chunkBytes === order[0]) {
          const buf = Buffer.from(first.params.buffer, first.params.byteOffset, first.params.byteLength);
          const h0 = performance.now();
          const hc = selfCpuMs();
          for (let i = 0; i < reps; i++) createHash('sha256').update(buf).digest('hex');
          keep(row('sha256 only (floor)', null, bytes, performance.now() - h0, selfCpuMs() - hc));
        }
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
        await redis.del(
          jobKeys.job(prefix, 'bench'),
          jobKeys.active(prefix),
          jobKeys.policy(prefix, 'bench'),
        );
      }
    }
  }
} finally {
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
}

/** The round with the median wall-clock throughput (the lower middle one for an even count). */
const median = (rs: Row[]): Row =>
  [...rs].sort((a, b) => a.mbPerSecond - b.mbPerSecond)[Math.floor((rs.length - 1) / 2)] as Row;
const rows: Row[] = [null, ...chunkSizes].flatMap((c) => {
  const rs = samples.get(c);
  return rs?.length ? [median(rs)] : [];
});
const ref = rows.find((r) => r.chunkBytes === DEFAULT_POLICY_CHUNK_BYTES)?.mbPerSecond ?? 0;
console.log(
  `weight transfer, preset ${values.preset}: ${(bytes / 1e6).toFixed(2)} MB per policy, ${reps} transfers each, ${rounds === 1 ? '1 round' : `median of ${rounds} rounds`}, loopback, learner in its own process`,
);
console.log(
  `${cpus().length} CPUs, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  '| what | chunk | MB/s (wall) | ms / transfer | CPU ms / transfer (both ends) | of which learner | MB per CPU-s | wall vs default chunks |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const chunk =
    r.chunkBytes === null
      ? '—'
      : `${r.chunkBytes / 1024} KiB${r.chunkBytes === DEFAULT_POLICY_CHUNK_BYTES ? ' (default)' : ''}`;
  console.log(
    `| ${r.what} | ${chunk} | ${r.mbPerSecond.toFixed(0)} | ${r.msPerTransfer.toFixed(1)} | ${r.cpuMsPerTransfer.toFixed(1)} | ${r.learnerCpuMsPerTransfer === null ? '—' : r.learnerCpuMsPerTransfer.toFixed(1)} | ${r.mbPerCpuSecond.toFixed(0)} | ${(r.mbPerSecond / ref).toFixed(2)}× |`,
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
        rounds,
        defaultChunkBytes: DEFAULT_POLICY_CHUNK_BYTES,
        cpus: cpus().length,
        loadavg: loadavg(),
        rows,
        samples: [...samples.values()].flat(),
        targetMbPerSecond: 200,
      },
      null,
      2,
    ) + '\n',
  );
}
process.exit(0);
