// `pnpm bench:cluster [--json FILE] [--steps N] [--model tiny|demo|small]`: the cluster benchmark. For 1 and then 2 rollout workers it
// starts a real local cluster (private redis-server, the five services as processes, gRPC on loopback),
// runs the same small SPARK job, and reads the step time breakdown from the job's PHASE events plus the
// services' own Prometheus histograms (sampling, verifying, synthesis, learner compute, weight sync); the
// rest of the step wall time is queue, gRPC and coordination overhead. Then it measures weight transfer for
// the `small` preset with the learner's GetPolicy benchmark. Not a test: it prints a table of figures
// measured side by side in one run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster } from '@spark/cli/launcher';
import { Algorithm, JobEventType, JobSpec, type JobEvent } from '@spark/protocol';

const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const steps = args.includes('--steps') ? Number(args[args.indexOf('--steps') + 1]) : 4;
// --model demo: the demo's model preset (and its 80 new tokens), i.e. the step sizes of `spark demo`
const model = args.includes('--model') ? (args[args.indexOf('--model') + 1] ?? 'tiny') : 'tiny';
if (!['tiny', 'demo', 'small'].includes(model)) {
  process.stderr.write(`bench:cluster: --model must be tiny, demo or small (got ${model})\n`);
  process.exit(2);
}

const job = JobSpec.fromPartial({
  name: 'bench-cluster',
  model,
  dataset: 'builtin',
  algorithm: Algorithm.ALGORITHM_SPARK,
  seed: 11,
  batchSize: 16,
  groupSize: 8,
  maxSteps: steps,
  warmupSteps: 5,
  learningRate: 2e-4,
  maxNewTokens: model === 'tiny' ? 48 : 80,
  evalSize: 16,
  evalInterval: 0,
  templateVariant: 'short',
});

/** Sum and count of a histogram (all label sets) from a Prometheus text exposition. */
function histogram(text: string, name: string): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    const m = /^(\S+?)(?:\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
    if (!m) continue;
    if (m[1] === `${name}_sum`) sum += Number(m[2]);
    if (m[1] === `${name}_count`) count += Number(m[2]);
  }
  return { sum, count };
}

interface RunFigures {
  rolloutWorkers: number;
  rlSeconds: number;
  samples: number;
  samplesPerSecond: number;
  breakdown: Record<string, number>;
  /** The busy times behind the breakdown, in seconds (weight sync = rollout fetches + learner publishing). */
  seconds: Record<string, number>;
}

async function run(rolloutWorkers: number): Promise<RunFigures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'spark-bench-'));
  const cluster = await startLocalCluster({ dataDir, rolloutWorkers, env: { SPARK_LOG_LEVEL: 'warn' } });
  try {
    const client = new JobClient({ address: cluster.coordinatorAddress, token: null });
    const { jobId } = await client.submit(job);
    const scrapeAll = async (): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const child of cluster.children) {
        const port = child.ready.metricsPort;
        if (port) out[child.name] = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      }
      return out;
    };
    // Busy-time histograms cover warm-up and evaluation too: snapshot them when RL starts (the eval
    // before RL has ended) and after every RL phase, and use the difference.
    const snaps: {
      start: Promise<Record<string, string>> | null;
      end: Promise<Record<string, string>> | null;
    } = {
      start: null,
      end: null,
    };
    const followed = await followJob(client, jobId, {
      out: null,
      onEvent: (e) => {
        if (e.type === JobEventType.JOB_EVENT_TYPE_EVAL && e.step === 0) snaps.start = scrapeAll();
        if (e.type === JobEventType.JOB_EVENT_TYPE_PHASE && e.step > 0) snaps.end = scrapeAll();
      },
    });
    const events: readonly JobEvent[] = followed.events;
    const rl = events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE && e.step > 0);
    const stepSeconds = rl.reduce((a, e) => a + (e.metrics['seconds.total'] ?? 0), 0);
    const samples = rl.reduce((a, e) => a + (e.metrics.samples ?? 0), 0);
    if (!snaps.start || !snaps.end) throw new Error('the job reported no RL phase');
    const start = await snaps.start;
    const end = await snaps.end;
    const sumOver = (prefix: string, metric: string) =>
      Object.entries(end)
        .filter(([n]) => n.startsWith(prefix))
        .reduce((a, [n, t]) => a + histogram(t, metric).sum - histogram(start[n] ?? '', metric).sum, 0);
    // Sampling and verifying run in parallel across workers: their share of the wall time is the summed
    // busy time divided by the number of workers doing it.
    const verifierWorkers = cluster.children.filter((c) => c.service === 'verifier').length;
    const b = {
      sampling: sumOver('rollout', 'spark_rollout_sample_seconds') / rolloutWorkers,
      weightSync: sumOver('rollout', 'spark_rollout_weight_fetch_seconds') / rolloutWorkers,
      verifying: sumOver('verifier', 'spark_verifier_verify_seconds') / Math.max(1, verifierWorkers),
      synthesis: sumOver('reward-synthesis', 'spark_reward_synthesis_step_seconds'),
      // The learner's own compute per update (recomputed log-probs + training), from the LearnResults the
      // PHASE events carry; publishing a version counts as weight sync.
      learner: rl.reduce(
        (a, e) => a + (e.metrics['seconds.logprobs'] ?? 0) + (e.metrics['seconds.train'] ?? 0),
        0,
      ),
      publish: rl.reduce((a, e) => a + (e.metrics['seconds.publish'] ?? 0), 0),
    };
    const measured = Object.values(b).reduce((a, x) => a + x, 0);
    const total = Math.max(stepSeconds, 1e-9);
    const breakdown: Record<string, number> = {};
    for (const [k, v] of Object.entries(b)) breakdown[k] = v / total;
    breakdown.weightSync = (b.weightSync + b.publish) / total;
    delete breakdown.publish;
    // Queue hops, gRPC, Redis round trips, waiting and coordination: what the busy times do not cover.
    breakdown.overhead = 1 - measured / total;
    return {
      rolloutWorkers,
      rlSeconds: stepSeconds,
      samples,
      samplesPerSecond: samples / stepSeconds,
      breakdown,
      seconds: { ...b, overhead: stepSeconds - measured },
    };
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const started = loadavg()
  .map((x) => x.toFixed(2))
  .join(' ');
const runs: RunFigures[] = [];
for (const w of [1, 2]) runs.push(await run(w));

const weightsJson = join(mkdtempSync(join(tmpdir(), 'spark-bench-w-')), 'w.json');
const wb = spawnSync(
  'pnpm',
  ['--filter', '@spark/learner', 'run', 'bench', '--preset', 'small', '--json', weightsJson],
  {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
let weights: unknown;
try {
  weights = JSON.parse(readFileSync(weightsJson, 'utf8'));
} catch {
  weights = { error: `learner weight bench failed (exit ${wb.status})` };
}

const pct = (x: number | undefined) => `${((x ?? 0) * 100).toFixed(1)}%`;
console.log(
  `cluster benchmark (node ${process.versions.node}, load average ${started}; job: ${model} preset, B=16, G=8, ${steps} SPARK steps)\n`,
);
console.log(
  '| rollout workers | RL wall s | samples | samples/s | vs 1 worker | sampling | verifying | synthesis | learner | weight sync | overhead | outside model compute |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const base = runs[0]?.samplesPerSecond ?? 1;
for (const r of runs) {
  const d = r.breakdown;
  console.log(
    `| ${r.rolloutWorkers} | ${r.rlSeconds.toFixed(1)} | ${r.samples} | ${r.samplesPerSecond.toFixed(1)} | ${(r.samplesPerSecond / base).toFixed(2)}x | ${pct(d.sampling)} | ${pct(d.verifying)} | ${pct(d.synthesis)} | ${pct(d.learner)} | ${pct(d.weightSync)} | ${pct(d.overhead)} | ${pct(1 - (d.sampling ?? 0) - (d.learner ?? 0))} |`,
  );
}
const wbLines = wb.stdout.trim().split('\n');
console.log(
  `\nweight transfer (small preset, learner GetPolicy → fetchPolicy with sha256):\n${wbLines
    .slice(
      Math.max(
        0,
        wbLines.findIndex((l) => l.startsWith('weight transfer')),
      ),
    )
    .join('\n')}`,
);
if (jsonOut)
  writeFileSync(jsonOut, `${JSON.stringify({ loadAverage: started, steps, runs, weights }, null, 2)}\n`);
