// `pnpm bench:load [--seconds N] [--json FILE]`: a load test from a second process. It starts a real local
// cluster (private redis-server, the five services as processes) with small limits, starts a small training
// job, and while it trains runs ghz (a gRPC load generator, pinned, built from the Go module proxy into
// .tools/bin) against SubmitJob, WatchJob and Generate of the coordinator, one method after the other. It
// samples the coordinator's resident memory (VmRSS) throughout and checks the limits of docs/guarantees.md:
// beyond them the coordinator answers RESOURCE_EXHAUSTED (never INTERNAL / UNAVAILABLE), its memory stays
// bounded, and the training job still SUCCEEDS. Prints the figures (requests/s, status counts, RSS) and exits
// non-zero when a check fails. Not part of `npm test` (it takes a few minutes on a loaded machine).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { JobClient } from '@spark/cli/client';
import { startLocalCluster } from '@spark/cli/launcher';
import { Model } from '@spark/kernels';
import { JobSpec, JobState } from '@spark/protocol';

const GHZ_VERSION = 'v0.120.0';
const args = process.argv.slice(2);
const seconds = args.includes('--seconds') ? Number(args[args.indexOf('--seconds') + 1]) : 10;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const root = new URL('../..', import.meta.url).pathname;
const ghz = join(root, '.tools/bin/ghz');
const concurrency = { SubmitJob: 20, WatchJob: 64, Generate: 32 };
const LIMITS = { maxQueuedJobs: 200, maxWatchers: 16, generateMaxInFlight: 8 };

function ensureGhz(): void {
  const stamp = join(root, '.tools/bin/.ghz-version');
  if (existsSync(ghz) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === GHZ_VERSION) return;
  process.stderr.write(`bench:load: building ghz ${GHZ_VERSION} into .tools/bin (once)\n`);
  const r = spawnSync('go', ['install', `github.com/bojand/ghz/cmd/ghz@${GHZ_VERSION}`], {
    env: { ...process.env, GOBIN: join(root, '.tools/bin'), GOFLAGS: '-buildvcs=false' },
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error('go install ghz failed');
  writeFileSync(stamp, `${GHZ_VERSION}\n`);
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

interface GhzReport {
  count: number;
  rps: number;
  average: number;
  statusCodeDistribution: Record<string, number>;
  errorDistribution?: Record<string, number>;
}

/** Runs ghz in its own process (asynchronously, so this process keeps sampling memory). */
async function runGhz(address: string, method: string, data: unknown, concurrency: number, timeout: string) {
  const { spawn } = await import('node:child_process');
  const argv = [
    '--insecure',
    '--proto',
    join(root, 'proto/spark/v1/job.proto'),
    '--import-paths',
    join(root, 'proto'),
    '--call',
    `spark.v1.JobService.${method}`,
    '-d',
    JSON.stringify(data),
    '-c',
    String(concurrency),
    '-z',
    `${seconds}s`,
    '--timeout',
    timeout,
    '--format',
    'json',
    address,
  ];
  return new Promise<GhzReport>((resolve, reject) => {
    const p = spawn(ghz, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      try {
        resolve(JSON.parse(out) as GhzReport);
      } catch {
        reject(new Error(`ghz ${method} exited ${code}: ${out.slice(0, 500)}`));
      }
    });
  });
}

async function main(): Promise<void> {
  ensureGhz();
  const dir = mkdtempSync(join(tmpdir(), 'spark-load-'));
  const ckpt = join(dir, 'cluster', 'gen-ckpt');
  const m = await Model.create('tiny', 3);
  await m.save(ckpt);
  m.free();
  const cluster = await startLocalCluster({
    dataDir: join(dir, 'cluster'),
    prefix: 'load',
    env: {
      SPARK_LOG_LEVEL: 'warn',
      SPARK_MAX_QUEUED_JOBS: String(LIMITS.maxQueuedJobs),
      SPARK_MAX_WATCHERS: String(LIMITS.maxWatchers),
      SPARK_GENERATE_MAX_IN_FLIGHT: String(LIMITS.generateMaxInFlight),
    },
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
  const failures: string[] = [];
  try {
    const coord = cluster.children.find((c) => c.service === 'coordinator');
    if (!coord) throw new Error('no coordinator');
    const { jobId } = await client.submit(
      JobSpec.fromPartial({
        name: 'load-train',
        model: 'tiny',
        batchSize: 4,
        groupSize: 2,
        maxSteps: 48,
        maxNewTokens: 16,
        trainSize: 1024,
        evalSize: 4,
      }),
    );
    const rssBefore = rssKiB(coord.pid);
    let rssMax = rssBefore;
    const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssKiB(coord.pid))), 200);

    const submitSpec = {
      spec: { name: 'load', model: 'tiny', trainSize: 64, evalSize: 4, batchSize: 4, groupSize: 2 },
    };
    const results: Record<string, GhzReport> = {};
    results.SubmitJob = await runGhz(
      cluster.coordinatorAddress,
      'SubmitJob',
      submitSpec,
      concurrency.SubmitJob,
      '10s',
    );
    results.WatchJob = await runGhz(
      cluster.coordinatorAddress,
      'WatchJob',
      { jobId, afterSeq: 0 },
      concurrency.WatchJob,
      '2s',
    );
    results.Generate = await runGhz(
      cluster.coordinatorAddress,
      'Generate',
      { checkpoint: ckpt, prompts: ['1+1=?'], maxNewTokens: 4, tokenizer: 'char' },
      concurrency.Generate,
      '20s',
    );
    clearInterval(sampler);
    const rssAfterLoad = rssKiB(coord.pid);
    // the load overlapped the training: the job was still running when it ended
    const loadEndedAt = Date.now();
    const stateAfterLoad = (await client.get(jobId)).state;
    if (stateAfterLoad !== JobState.JOB_STATE_RUNNING)
      failures.push(`the training job was ${JobState[stateAfterLoad]} when the load ended: make it longer`);

    // the training job still succeeds (the queued load jobs wait behind it: cancel none, just wait for it)
    const deadline = Date.now() + 600_000;
    let state = JobState.JOB_STATE_UNSPECIFIED;
    while (Date.now() < deadline) {
      state = (await client.get(jobId)).state;
      if (state !== JobState.JOB_STATE_RUNNING && state !== JobState.JOB_STATE_QUEUED) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const rssEnd = rssKiB(coord.pid);
    const jobEndedSecondsAfterLoad = Math.round(((await client.get(jobId)).updatedAtMs - loadEndedAt) / 1000);
    if (state !== JobState.JOB_STATE_SUCCEEDED) failures.push(`the training job ended ${JobState[state]}`);
    for (const [method, r] of Object.entries(results)) {
      // ghz stops at the end of the run with calls in flight: those end Canceled or Unavailable ("transport is
      // closing") on the client's side, at most one per concurrent caller; any other failure is the server's
      const cutOff = Object.entries(r.errorDistribution ?? {})
        .filter(([e]) =>
          /transport is closing|context canceled|the client connection is closing|use of closed network connection/.test(
            e,
          ),
        )
        .reduce((n, [, k]) => n + k, 0);
      const serverSide = Object.entries(r.statusCodeDistribution).filter(([c]) =>
        ['Internal', 'Unknown', 'Unavailable', 'Canceled'].includes(c),
      );
      const n = serverSide.reduce((a, [, k]) => a + k, 0);
      if (n > cutOff || cutOff > concurrency[method as keyof typeof concurrency])
        failures.push(
          `${method}: ${JSON.stringify(r.statusCodeDistribution)} ${JSON.stringify(r.errorDistribution)}`,
        );
    }
    if (!results.SubmitJob?.statusCodeDistribution.ResourceExhausted)
      failures.push('SubmitJob: no RESOURCE_EXHAUSTED past maxQueuedJobs');
    if (!results.WatchJob?.statusCodeDistribution.ResourceExhausted)
      failures.push('WatchJob: no RESOURCE_EXHAUSTED past maxWatchers');
    if (!results.Generate?.statusCodeDistribution.ResourceExhausted)
      failures.push('Generate: no RESOURCE_EXHAUSTED past generateMaxInFlight');

    const report = {
      seconds,
      limits: LIMITS,
      methods: Object.fromEntries(
        Object.entries(results).map(([k, r]) => [
          k,
          {
            concurrency: concurrency[k as keyof typeof concurrency],
            requests: r.count,
            rps: Math.round(r.rps),
            statuses: r.statusCodeDistribution,
            errors: r.errorDistribution,
          },
        ]),
      ),
      coordinatorRssMiB: {
        before: +(rssBefore / 1024).toFixed(1),
        maxDuringLoad: +(rssMax / 1024).toFixed(1),
        afterLoad: +(rssAfterLoad / 1024).toFixed(1),
        afterJob: +(rssEnd / 1024).toFixed(1),
      },
      trainingJobWhenLoadEnded: JobState[stateAfterLoad],
      trainingJob: JobState[state],
      jobEndedSecondsAfterLoad,
      failures,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify(report, null, 2));
  } finally {
    client.close();
    await cluster.stop();
  }
  if (failures.length) process.exit(1);
}

await main();
