// `pnpm bench:cluster [--json FILE] [--steps N] [--model tiny|demo|small] [--quick]`: the cluster benchmark. For 1 and then 2 rollout workers it
// starts a real local cluster (private redis-server, the five services as processes, gRPC on loopback),
// runs the same small SPARK job, and splits the RL wall time into sampling, verifying, synthesis, learner
// compute, weight sync and overhead, from the job's PHASE events (the driver's windows) and the services'
// own Prometheus histograms scraped around every phase: a partition, each instant counted once, so the
// shares add up to 100% and "outside model compute" (everything but sampling and learner compute) is
// measured (see partitionRlTime). Overhead is queue hops, gRPC, Redis and coordination. Then it measures weight transfer for
// the `small` preset with the learner's GetPolicy benchmark. Not a test: it prints a table of figures
// measured side by side in one run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster } from '@spark/cli/launcher';
import { Algorithm, JobEventType, JobSpec, Phase, type JobEvent } from '@spark/protocol';

const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
// --quick: a smoke run (1 SPARK step, 3 weight transfers per chunk size), for a loaded machine
const quick = args.includes('--quick');
const steps = args.includes('--steps') ? Number(args[args.indexOf('--steps') + 1]) : quick ? 1 : 4;
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
  /** The partition of the RL wall time, in seconds (weight sync = rollout fetches + learner publishing). */
  seconds: Partition;
}

/**
 * An RL phase (policy or reward) of any step. Steps count from 0 for warm-up and RL alike, so `step > 0`
 * (used before) dropped the first RL step and took in warm-up steps 1….
 */
const isRlPhase = (e: JobEvent) =>
  e.type === JobEventType.JOB_EVENT_TYPE_PHASE &&
  (e.phase === Phase.PHASE_POLICY || e.phase === Phase.PHASE_REWARD);

/** Where the RL wall time went, in seconds per category: a partition (the categories add up to the wall). */
type Partition = Record<
  'weightSync' | 'sampling' | 'verifying' | 'synthesis' | 'learner' | 'overhead',
  number
>;

/**
 * Splits the RL wall time into categories that add up to it, each instant counted once, on a critical-path
 * basis. The driver runs a phase as consecutive windows, whose lengths its PHASE event reports:
 * sample-and-verify (`seconds.sampling`), synthesis (`seconds.synthesis`, policy phases) and the learner
 * call (`seconds.learner`); the rest of the phase (`seconds.total`) is coordination. Within a window the
 * busy time of each role in that phase (the difference of the services' histograms scraped before and
 * after it; divided by the workers of the role, i.e. the time the role was busy when its workers run side
 * by side) is given out in priority order, each category capped at what is left of the window:
 *   sample-and-verify: weight sync (rollout weight fetches) > sampling > verifying (the part of it not
 *     hidden behind sampling) > overhead (queue hops, gRPC, Redis, idle);
 *   synthesis: synthesis > overhead;
 *   learner call: learner compute (log-probs + training) > weight sync (publishing the version) > overhead.
 * So concurrent work is counted once (a verifier busy while a sampler is counts as sampling), and the
 * overhead is what no measured work covers — never negative.
 */
function partitionRlTime(
  rl: readonly JobEvent[],
  start: Record<string, string>,
  after: readonly Record<string, string>[],
  rolloutWorkers: number,
  verifierWorkers: number,
): Partition {
  const p: Partition = { weightSync: 0, sampling: 0, verifying: 0, synthesis: 0, learner: 0, overhead: 0 };
  let before = start;
  rl.forEach((e, i) => {
    const now = after[i] ?? before;
    const busy = (service: string, metric: string) =>
      Object.entries(now)
        .filter(([n]) => n.startsWith(service))
        .reduce((a, [n, t]) => a + histogram(t, metric).sum - histogram(before[n] ?? '', metric).sum, 0);
    const m = (k: string) => Math.max(0, e.metrics[k] ?? 0);
    /** Gives out a window in order: each [category, seconds] gets at most what is left; the rest is overhead. */
    const window = (length: number, claims: [keyof Partition, number][]) => {
      let left = length;
      for (const [k, want] of claims) {
        const got = Math.min(left, Math.max(0, want));
        p[k] += got;
        left -= got;
      }
      p.overhead += left;
      return length;
    };
    const used =
      window(m('seconds.sampling'), [
        ['weightSync', busy('rollout', 'spark_rollout_weight_fetch_seconds') / rolloutWorkers],
        ['sampling', busy('rollout', 'spark_rollout_sample_seconds') / rolloutWorkers],
        ['verifying', busy('verifier', 'spark_verifier_verify_seconds') / verifierWorkers],
      ]) +
      window(m('seconds.synthesis'), [
        ['synthesis', busy('reward-synthesis', 'spark_reward_synthesis_step_seconds')],
      ]) +
      window(m('seconds.learner'), [
        ['learner', m('seconds.logprobs') + m('seconds.train')],
        ['weightSync', m('seconds.publish')],
      ]);
    p.overhead += Math.max(0, m('seconds.total') - used);
    before = now;
  });
  return p;
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
    // Busy-time histograms cover warm-up and evaluation too, and accumulate: scrape every service when RL
    // starts (the eval before RL has ended) and after every RL phase, so that the difference of two
    // consecutive scrapes is the busy time of one phase.
    const scrapes: { start: Promise<Record<string, string>> | null } = { start: null };
    const phaseScrapes = new Map<number, Promise<Record<string, string>>>();
    const followed = await followJob(client, jobId, {
      out: null,
      onEvent: (e) => {
        if (e.type === JobEventType.JOB_EVENT_TYPE_EVAL && e.step === 0) scrapes.start = scrapeAll();
        if (isRlPhase(e)) phaseScrapes.set(e.seq, scrapeAll());
      },
    });
    const events: readonly JobEvent[] = followed.events;
    const rl = events.filter(isRlPhase);
    if (!scrapes.start || rl.length === 0) throw new Error('the job reported no RL phase');
    const samples = rl.reduce((a, e) => a + (e.metrics.samples ?? 0), 0);
    const verifierWorkers = cluster.children.filter((c) => c.service === 'verifier').length;
    const seconds = partitionRlTime(
      rl,
      await scrapes.start,
      await Promise.all(rl.map((e) => phaseScrapes.get(e.seq) as Promise<Record<string, string>>)),
      rolloutWorkers,
      Math.max(1, verifierWorkers),
    );
    const rlSeconds = Object.values(seconds).reduce((a, x) => a + x, 0);
    const total = Math.max(rlSeconds, 1e-9);
    const breakdown: Record<string, number> = {};
    for (const [k, v] of Object.entries(seconds)) breakdown[k] = v / total;
    return {
      rolloutWorkers,
      rlSeconds,
      samples,
      samplesPerSecond: samples / total,
      breakdown,
      seconds,
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
  [
    '--filter',
    '@spark/learner',
    'run',
    'bench',
    '--preset',
    'small',
    ...(quick ? ['--reps', '3'] : []),
    '--json',
    weightsJson,
  ],
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
  '(shares of the RL wall time, each instant counted once: weight sync > sampling > verifying while sampling and verifying; learner compute > publishing during the learner call; the rest is overhead)',
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
