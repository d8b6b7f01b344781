// Throughput benchmark of evaluation (root script `pnpm bench:eval`): evaluated problems per second
// in-process — greedy answers at several native batch sizes, with test-time self-reflection, and judge
// items of the reward benchmark — on one checkpoint (`--checkpoint DIR`, default: a tiny checkpoint made
// here as in the tests), measured side by side in one run with ratios to the batch-1 figure. Scoring (the
// verifier) is included in the time, as in `spark eval`. Cluster mode does not exist yet, so there is no
// cluster row. `--json FILE` writes every figure. Options: --count N (problems, default 64),
// --max-new-tokens N (default 64), --batches 1,8,32.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { formatTable } from '@spark/common/evaluation';
import { Verifier } from '@spark/verifier';

import { makeTinyCheckpoint } from './fixture.js';
import { problemsFromSplit } from './inputs.js';
import { loadGenerator } from './model.js';
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
    json: { type: 'string' },
  },
});
const count = Number(values.count);
const maxNewTokens = Number(values['max-new-tokens']);
const batches = values.batches.split(',').map(Number);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(maxNewTokens) || maxNewTokens < 1)
  throw new Error('--count and --max-new-tokens must be positive integers');
if (batches.some((b) => !Number.isInteger(b) || b < 1))
  throw new Error('--batches must list positive integers');

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
    ['run', 'batch', 'items', 'model calls', 'seconds', 'items/s', 'out tok/s', 'vs batch 1'],
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
process.stdout.write('\ncluster mode: not available (evaluation runs in-process only)\n');
if (values.json !== undefined) {
  await writeFile(
    values.json,
    JSON.stringify({ count, maxNewTokens, loadAverage: load0, inProcess: rows, cluster: null }, null, 2) +
      '\n',
  );
}
