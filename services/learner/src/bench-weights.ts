// Weight-transfer benchmark: a real learner (PolicyService on 127.0.0.1, real Redis) serves a job's policy
// and `fetchPolicy` pulls it over loopback, verifying size and sha256 as samplers do. Figures, side by side
// in one run: MB/s per chunk size, against the SHA-256 of the same buffer alone (the verification floor).
// Target (issue 5): ≥ 200 MB/s for the small preset.
//
//   pnpm --filter @spark/learner run bench [--preset small] [--reps 8] [--json FILE]
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';

import { encodeJobSpec, fetchPolicy, jobKeys } from '@spark/common/cluster';
import { loadConfig } from '@spark/common/config';
import { createLogger } from '@spark/common/logging';
import { JobSpec } from '@spark/common/proto';
import { connectRedis, uniquePrefix } from '@spark/common/redis';
import { testRedisUrl } from '@spark/common/testing';

import { learnerConfigShape, startLearner, whenRedisReady } from './index.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    reps: { type: 'string', default: '8' },
    json: { type: 'string' },
  },
});
const reps = Math.max(2, Number(values.reps));
const chunkSizes = [256 * 1024, 1024 * 1024, 4 * 1024 * 1024];

const silent = createLogger({
  service: 'bench',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});

interface Row {
  what: string;
  chunkBytes: number | null;
  /** Wall-clock throughput. */
  mbPerSecond: number;
  msPerTransfer: number;
  /** CPU time of this process (it holds both ends) per transfer, and MB per CPU-second. */
  cpuMsPerTransfer: number;
  mbPerCpuSecond: number;
}

function measure(
  what: string,
  chunkBytes: number | null,
  bytes: number,
  wallMs: number,
  cpu: NodeJS.CpuUsage,
): Row {
  const cpuMs = (cpu.user + cpu.system) / 1000 / reps;
  const ms = wallMs / reps;
  return {
    what,
    chunkBytes,
    mbPerSecond: bytes / 1e6 / (ms / 1000),
    msPerTransfer: ms,
    cpuMsPerTransfer: cpuMs,
    mbPerCpuSecond: bytes / 1e6 / (cpuMs / 1000),
  };
}

const url = await testRedisUrl();
const redis = connectRedis(url);
await whenRedisReady(redis);
const dir = await mkdtemp(join(tmpdir(), 'spark-bench-weights-'));
const rows: Row[] = [];
let bytes = 0;
try {
  // the verification floor: hashing the same number of bytes
  for (const chunkBytes of chunkSizes) {
    const prefix = uniquePrefix('bench-weights');
    const spec = JobSpec.fromPartial({ model: values.preset, seed: 1, checkpointDir: join(dir, 'ckpt') });
    await redis.hset(jobKeys.job(prefix, 'bench'), { spec: encodeJobSpec(spec), state: 'RUNNING' });
    await redis.sadd(jobKeys.active(prefix), 'bench');
    const config = loadConfig('learner', learnerConfigShape, {
      env: {},
      overrides: {
        redisUrl: url,
        redisPrefix: prefix,
        localMode: true,
        dataDir: dir,
        logLevel: 'silent',
        policyChunkBytes: chunkBytes,
      },
    });
    const service = await startLearner(config, { logger: silent });
    try {
      const state = await service.learner.ensureJob('bench');
      const snap = state.snapshot(0);
      if (!snap) throw new Error('no snapshot');
      bytes = snap.bytes.length;
      const opts = { token: null, defaultDeadlineMs: 60_000 };
      await fetchPolicy(service.address, 'bench', 0, opts); // warm the connection path and JIT
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) {
        const got = await fetchPolicy(service.address, 'bench', 0, opts);
        if (got.sha256 !== snap.sha256) throw new Error('checksum mismatch');
      }
      rows.push(
        measure('GetPolicy + verify', chunkBytes, bytes, performance.now() - t0, process.cpuUsage(c0)),
      );
      if (chunkBytes === chunkSizes[0]) {
        const h0 = performance.now();
        const hc = process.cpuUsage();
        for (let i = 0; i < reps; i++) createHash('sha256').update(snap.bytes).digest('hex');
        rows.push(measure('sha256 only (floor)', null, bytes, performance.now() - h0, process.cpuUsage(hc)));
      }
    } finally {
      await service.close();
      await redis.del(jobKeys.job(prefix, 'bench'), jobKeys.active(prefix), jobKeys.policy(prefix, 'bench'));
    }
  }
} finally {
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
}

const ref = rows.find((r) => r.chunkBytes === 1024 * 1024)?.mbPerSecond ?? 1;
console.log(
  `weight transfer, preset ${values.preset}: ${(bytes / 1e6).toFixed(2)} MB per policy, ${reps} transfers each, loopback`,
);
console.log(
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  '| what | chunk | MB/s (wall) | ms / transfer | CPU ms / transfer | MB per CPU-s | wall vs 1 MiB chunks |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const chunk = r.chunkBytes === null ? '—' : `${r.chunkBytes / 1024} KiB`;
  console.log(
    `| ${r.what} | ${chunk} | ${r.mbPerSecond.toFixed(0)} | ${r.msPerTransfer.toFixed(1)} | ${r.cpuMsPerTransfer.toFixed(1)} | ${r.mbPerCpuSecond.toFixed(0)} | ${(r.mbPerSecond / ref).toFixed(2)}× |`,
  );
}
console.log(
  '(client and server share this process: CPU ms counts both ends; wall time includes waiting for the CPU on a loaded machine)',
);
console.log(`target ≥ 200 MB/s (1 MiB chunks, the default): ${ref >= 200 ? 'met' : 'NOT met'}`);
if (values.json) {
  await writeFile(
    values.json,
    JSON.stringify(
      { preset: values.preset, bytes, reps, loadavg: loadavg(), rows, targetMbPerSecond: 200 },
      null,
      2,
    ) + '\n',
  );
}
process.exit(0);
