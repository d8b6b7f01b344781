// Throughput benchmark of evaluation (root script `pnpm bench:eval`): evaluated problems per second
// in-process — greedy answers at several native batch sizes, with test-time self-reflection, and judge
// items of the reward benchmark — on one checkpoint (`--checkpoint DIR`, default: a tiny checkpoint made
// here as in the tests), measured side by side in one run with ratios to the batch-1 figure. Scoring (the
// verifier) is included in the time, as in `spark eval`. Then the same answers and judge workloads through a
// local cluster (`spark eval --address`: a coordinator and `--cluster-workers` rollout worker processes,
// default 2, on a private Redis; JobService.Generate with 2 × workers calls in flight), side by side with
// the in-process figure of the same workload: both are run alternately `--repeat` times (default 3) and
// their medians compared (the checkpoint is loaded on the workers by a warm-up call first, as in-process
// it is loaded before timing). `--json FILE` writes every figure. Options: --count N (problems, default
// 64), --max-new-tokens N (default 64), --batches 1,8,32, --cluster-workers N (0 = no cluster rows),
// --in-flight N (default 2 × workers), --repeat N.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { formatTable, type GenerateFn } from '@spark/method/evaluation';
import { Verifier } from '@spark/verify';

import { JobClient } from '../client/index.js';
import { startLocalCluster } from '../launcher/index.js';
import { clusterGenerator } from './cluster.js';
import { makeTinyCheckpoint } from '@spark/method/checkpoint';
import { problemsFromSplit } from './inputs.js';
import { loadGenerator } from '@spark/method/checkpoint';
import { runJudge, runProblems } from './run.js';

interface Row {
  readonly name: string;
  readonly batch: number;
  readonly items: number;
  readonly modelCalls: number;
  readonly seconds: number;
  readonly itemsPerSecond: number;
  readonly outputTokensPerSecond: number;
}

const { values } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    count: { type: 'string', default: '64' },
    'max-new-tokens': { type: 'string', default: '64' },
    batches: { type: 'string', default: '1,8,32' },
    'cluster-workers': { type: 'string', default: '2' },
    'in-flight': { type: 'string' },
    repeat: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
const count = Number(values.count);
const maxNewTokens = Number(values['max-new-tokens']);
const batches = values.batches.split(',').map(Number);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(maxNewTokens) || maxNewTokens < 1)
  throw new Error('--count and --max-new-tokens must be positive integers');
if (batches.some((b) => !Number.isInteger(b) || b < 1 || b > 256))
  throw new Error('--batches must list integers in [1, 256]');
const clusterWorkers = Number(values['cluster-workers']);
if (!Number.isInteger(clusterWorkers) || clusterWorkers < 0 || clusterWorkers > 16)
  throw new Error('--cluster-workers must be an integer in [0, 16]');
const inFlight = Number(values['in-flight'] ?? 2 * Math.max(1, clusterWorkers));
if (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > 64)
  throw new Error('--in-flight must be an integer in [1, 64]');

const repeat = Number(values.repeat);
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20)
  throw new Error('--repeat must be an integer in [1, 20]');

interface ClusterRow {
  readonly name: string;
  readonly batch: number;
  readonly items: number;
  readonly repeat: number;
  /** Medians over `repeat` alternating runs. */
  readonly inProcessItemsPerSecond: number;
  readonly clusterItemsPerSecond: number;
  readonly ratio: number;
  readonly inProcessRuns: number[];
  readonly clusterRuns: number[];
  /** Prompts generated per worker over all the runs of the workload. */
  readonly workers: Record<string, number>;
}
const clusterRows: ClusterRow[] = [];

const tmp = await mkdtemp(join(tmpdir(), 'spark-bench-eval-'));
const checkpoint = values.checkpoint ?? join(tmp, 'ckpt');
if (values.checkpoint === undefined) await makeTinyCheckpoint(checkpoint, 60);
const { problems, report } = problemsFromSplit('test', count, 0);
const verifier = new Verifier({ budgetMs: 50 });
await verifier.ready();
const rows: Row[] = [];
const load0 = loadavg()[0] ?? 0;
try {
  const measure = async (
    name: string,
    batch: number,
    run: (gen: Awaited<ReturnType<typeof loadGenerator>>) => Promise<number>,
  ): Promise<void> => {
    const gen = await loadGenerator(checkpoint, { maxNewTokens, batch });
    try {
      const t0 = performance.now();
      const items = await run(gen);
      const seconds = (performance.now() - t0) / 1000;
      rows.push({
        name,
        batch,
        items,
        modelCalls: gen.stats.prompts,
        seconds,
        itemsPerSecond: items / seconds,
        outputTokensPerSecond: gen.stats.outputTokens / seconds,
      });
    } finally {
      gen.close();
    }
  };
  const settings = (batch: number, reflect: boolean) => ({
    variant: 'short' as const,
    batch,
    reflect,
    seed: 0,
  });
  for (const batch of batches) {
    await measure('answers', batch, async (g) => {
      const r = await runProblems(problems, g.generate, verifier, report, settings(batch, false));
      return r.results.length;
    });
  }
  const big = Math.max(...batches);
  await measure('answers + reflection', big, async (g) => {
    const r = await runProblems(problems, g.generate, verifier, report, settings(big, true));
    return r.results.length;
  });
  await measure('judge items', big, async (g) => {
    const r = await runJudge(problems, g.generate, verifier, report, settings(big, false));
    return r.results.length;
  });
  if (clusterWorkers > 0) {
    const cluster = await startLocalCluster({
      dataDir: join(tmp, 'cluster'),
      prefix: 'bench-eval',
      services: ['coordinator', 'rollout'],
      rolloutWorkers: clusterWorkers,
      env: { SPARK_LOG_LEVEL: 'warn' },
    });
    const client = new JobClient({ address: cluster.coordinatorAddress, token: null });
    try {
      const gen = clusterGenerator(client, {
        checkpoint,
        maxNewTokens,
        batch: big,
        inFlight,
        deadlineMs: 600_000,
      });
      // warm-up: every worker loads the checkpoint (one piece each, most likely) before timing
      await gen.generate(problems.slice(0, 2 * inFlight).map((p) => p.question));
      // the same workload in-process (at the largest batch) and through the cluster, alternately `repeat`
      // times; the medians are compared (single sub-second spans are too noisy on a shared machine)
      const local = await loadGenerator(checkpoint, { maxNewTokens, batch: big });
      try {
        const timed = async (run: () => Promise<number>): Promise<{ items: number; seconds: number }> => {
          const t0 = performance.now();
          const items = await run();
          return { items, seconds: (performance.now() - t0) / 1000 };
        };
        const median = (xs: number[]): number => {
          const sorted = [...xs].sort((a, b) => a - b);
          return sorted[Math.floor(sorted.length / 2)] as number;
        };
        const workload = async (
          name: string,
          run: (generate: GenerateFn, round: number) => Promise<number>,
        ): Promise<void> => {
          const before = { ...gen.stats.workers };
          const inProc: number[] = [];
          const viaCluster: number[] = [];
          let items = 0;
          for (let k = 0; k < repeat; k++) {
            const a = await timed(() => run(local.generate, big));
            const b = await timed(() => run(gen.generate, big * inFlight));
            inProc.push(a.items / a.seconds);
            viaCluster.push(b.items / b.seconds);
            items = b.items;
          }
          const workers: Record<string, number> = {};
          for (const [w, n] of Object.entries(gen.stats.workers)) workers[w] = n - (before[w] ?? 0);
          const inProcessItemsPerSecond = median(inProc);
          const clusterItemsPerSecond = median(viaCluster);
          clusterRows.push({
            name,
            batch: big,
            items,
            repeat,
            inProcessItemsPerSecond,
            clusterItemsPerSecond,
            ratio: clusterItemsPerSecond / inProcessItemsPerSecond,
            inProcessRuns: inProc,
            clusterRuns: viaCluster,
            workers,
          });
        };
        await workload('answers', async (generate, round) => {
          const r = await runProblems(problems, generate, verifier, report, settings(big, false), round);
          return r.results.length;
        });
        await workload('judge items', async (generate, round) => {
          const r = await runJudge(problems, generate, verifier, report, settings(big, false), round);
          return r.results.length;
        });
      } finally {
        local.close();
      }
    } finally {
      client.close();
      await cluster.stop();
    }
  }
} finally {
  await verifier.close();
  await rm(tmp, { recursive: true, force: true });
}

const base = rows[0]?.itemsPerSecond ?? 1;
process.stdout.write(
  `evaluation throughput, in-process (checkpoint ${values.checkpoint ?? 'tiny, made here'}; ${count} test problems; ` +
    `max ${maxNewTokens} new tokens; load average ${load0.toFixed(1)} at start)\n\n`,
);
process.stdout.write(
  formatTable(
    ['run', 'batch', 'items', 'model calls', 'seconds', 'items/s', 'out tok/s', `vs batch ${batches[0]}`],
    rows.map((r) => [
      r.name,
      String(r.batch),
      String(r.items),
      String(r.modelCalls),
      r.seconds.toFixed(2),
      r.itemsPerSecond.toFixed(1),
      r.outputTokensPerSecond.toFixed(0),
      `${(r.itemsPerSecond / base).toFixed(2)}x`,
    ]),
  ) + '\n',
);
if (clusterRows.length) {
  process.stdout.write(
    `\nthrough a ${clusterWorkers}-worker cluster (spark eval --address: coordinator + ${clusterWorkers} rollout worker ` +
      `processes on this machine, ${inFlight} Generate calls in flight) vs in-process, same workload; ` +
      `medians of ${repeat} alternating runs\n\n`,
  );
  process.stdout.write(
    formatTable(
      [
        'run',
        'batch',
        'items',
        'in-process items/s',
        'cluster items/s',
        'cluster / in-process',
        'prompts per worker',
      ],
      clusterRows.map((r) => [
        r.name,
        String(r.batch),
        String(r.items),
        r.inProcessItemsPerSecond.toFixed(1),
        r.clusterItemsPerSecond.toFixed(1),
        `${r.ratio.toFixed(2)}x`,
        Object.values(r.workers).join(' / '),
      ]),
    ) + '\n',
  );
}
const load1 = loadavg()[0] ?? 0;
process.stdout.write(`\nload average ${load1.toFixed(1)} at the end\n`);
if (values.json !== undefined) {
  await writeFile(
    values.json,
    JSON.stringify(
      {
        count,
        maxNewTokens,
        loadAverage: load0,
        loadAverageEnd: load1,
        inProcess: rows,
        cluster: clusterRows.length ? { workers: clusterWorkers, inFlight, rows: clusterRows } : null,
      },
      null,
      2,
    ) + '\n',
  );
}
