// `pnpm bench:compare --base CKPT [--steps N] [--seed N] [--count N] [--out DIR]`: the side-by-side run
// of docs/results.md. From ONE base checkpoint (the `warmup` checkpoint `spark demo` writes after its
// warm-up), it trains `spark`, `grpo` and `grpo-judge` with the demo job's settings and the same seed and
// step budget (each through its own real local cluster: `spark demo` with SPARK_DEMO_SPEC, all at once so
// they share the machine equally), then evaluates the base and the three final checkpoints with
// `spark eval` on the same held-out file: answer accuracy without and with test-time self-reflection, and
// the reward benchmark (`--judge`). Prints a table and writes DIR/compare.json and DIR/compare.md. Not a
// test: a measurement, every figure from the commands it runs. `--eval-only` re-evaluates the runs already
// in DIR without training again; each evaluation's summary.json is kept as DIR/eval-<model>-*.json. With
// `--extra '{"evalInterval":N}'` each run also evaluates every N steps in the job, and the table gains the
// curve of judge accuracy against the judge prompts trained on so far.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';

import { DEMO_JOB } from '@spark/cli/demo-job';
import { syntheticRecords, toEvalLine } from '@spark/method/datasets';
import type { Difficulty, Family } from '@spark/method/tasks';

const ROOT = resolve(import.meta.dirname, '../..');
const SPARK = join(ROOT, 'services/cli/bin/spark.mjs');
const ALGORITHMS = { spark: 'ALGORITHM_SPARK', grpo: 'ALGORITHM_GRPO', 'grpo-judge': 'ALGORITHM_GRPO_JUDGE' };

function usage(message: string): never {
  process.stderr.write(
    `bench:compare: ${message}\nusage: pnpm bench:compare --base CKPT [--steps N] [--seed N] [--count N] [--out DIR] [--eval-only] [--algorithms LIST] [--extra JSON]\n`,
  );
  process.exit(2);
}

function option(name: string, fallback?: string): string | undefined {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) usage(`--${name} needs a value`);
  return v;
}

function intOption(name: string, fallback: number, max: number): number {
  const text = option(name, String(fallback)) as string;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) usage(`--${name} must be an integer in [1, ${max}]`);
  return n;
}

const base = option('base') ?? usage('--base CKPT is required (e.g. OUT/cluster/jobs/<job>/warmup)');
if (!existsSync(join(base, 'config.json'))) usage(`${base}: not a checkpoint directory (no config.json)`);
const steps = intOption('steps', 24, 10_000);
const seed = intOption('seed', DEMO_JOB.seed ?? 7, 2 ** 31);
const count = intOption('count', 256, 100_000);
const out = resolve(option('out', 'out/compare') as string);
// --eval-only: reuse the trained runs already in OUT (re-evaluate without training again)
const evalOnly = process.argv.includes('--eval-only');
// --algorithms spark,grpo: a subset; --extra JSON: more JobSpec fields for every run (e.g. a recycling switch)
const algorithms = (option('algorithms', Object.keys(ALGORITHMS).join(',')) as string).split(',');
for (const a of algorithms)
  if (!(a in ALGORITHMS)) usage(`unknown algorithm "${a}" (spark, grpo, grpo-judge)`);
let extra: Record<string, unknown> = {};
try {
  extra = JSON.parse(option('extra', '{}') as string) as Record<string, unknown>;
} catch (e) {
  usage(`--extra is not JSON: ${(e as Error).message}`);
}
const maxNewTokens = Number(extra.maxNewTokens ?? DEMO_JOB.maxNewTokens ?? 128);
if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1)
  usage('--extra maxNewTokens must be a positive integer');
mkdirSync(out, { recursive: true });

/** Runs the CLI; resolves with its stdout, rejects with its stderr tail on a non-zero exit. */
function spark(args: string[], env: NodeJS.ProcessEnv = process.env, logFile?: string): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [SPARK, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on('close', (code) => {
      if (logFile) writeFileSync(logFile, stdout + stderr);
      if (code === 0) done(stdout);
      else fail(new Error(`spark ${args.join(' ')} exited ${String(code)}: ${stderr.trim()}`));
    });
  });
}

// the held-out file: `count` unique test-split problems of the demo's task mix, one dataset per family
const families = (DEMO_JOB.taskFamilies ?? []) as Family[];
const maxDifficulty = DEMO_JOB.taskMaxDifficulty ?? 1;
const heldout = join(out, 'heldout.jsonl');
const records = syntheticRecords({
  seed,
  split: 'test',
  count,
  unique: true,
  families,
  difficulties: ([1, 2, 3] as Difficulty[]).filter((d) => d <= maxDifficulty),
});
writeFileSync(
  heldout,
  records.map((r) => toEvalLine({ ...r, dataset: r.id.split('-')[1] ?? 'synthetic' })).join('\n') + '\n',
);

const t0 = performance.now();
const load0 = loadavg()[0] ?? 0;
process.stdout.write(`training ${algorithms.join(', ')} for ${steps} steps from ${base}\n`);
const finals = await Promise.all(
  Object.entries(ALGORITHMS)
    .filter(([name]) => algorithms.includes(name))
    .map(async ([name, algorithm]) => {
      const dir = join(out, name);
      // The coordinator reads models only below its data roots (docs/guarantees.md, paths confined): the
      // base checkpoint is copied under the run's dataset root, where every run starts from its own copy.
      const model = join(dir, 'cluster', 'datasets', 'base-model');
      if (!evalOnly) {
        rmSync(model, { recursive: true, force: true });
        cpSync(resolve(base), model, { recursive: true });
      }
      const spec = {
        ...extra,
        algorithm,
        model,
        warmupSteps: 0,
        maxSteps: steps,
        // no in-job evaluation unless --extra asks for one (the curve below)
        evalInterval: Number(extra.evalInterval ?? 0),
        seed,
      };
      const started = performance.now();
      if (!evalOnly)
        await spark(
          ['demo', '--out', dir],
          { ...process.env, SPARK_DEMO_SPEC: JSON.stringify(spec) },
          join(out, `${name}.log`),
        );
      const jobs = readdirSync(join(dir, 'cluster', 'jobs'));
      const job = jobs[0];
      if (jobs.length !== 1 || job === undefined)
        throw new Error(`${dir}: expected one job, found ${jobs.length}`);
      const latest = JSON.parse(readFileSync(join(dir, 'cluster', 'jobs', job, 'latest.json'), 'utf8')) as {
        dir: string;
      };
      const seconds = (performance.now() - started) / 1000;
      process.stdout.write(`  ${name}: ${seconds.toFixed(0)} s\n`);
      return { name, checkpoint: join(dir, 'cluster', 'jobs', job, latest.dir), seconds };
    }),
);
const trainSeconds = (performance.now() - t0) / 1000;

interface ReflectSummary {
  answers: { mean: number };
  withoutReflection: { mean: number };
  reflection: {
    fixed: number;
    broken: number;
    verdictAccuracy: number;
    verdictCounts: { yes: number; no: number; other: number; none: number };
  };
}
interface DiagGroupJson {
  accuracy: number;
  yesShare: number;
  count: number;
}
interface JudgeSummaryJson {
  judge: { pointwise: { accuracy: number }; pairwise: { accuracy: number }; mean: number };
  diagnostics: {
    byOrder: Record<string, Record<string, DiagGroupJson>>;
    wrongAnswers: Record<string, { pointwise: DiagGroupJson }>;
    auc: { styles: Record<string, number | null> } | null;
  };
}

const rows = [];
for (const m of [{ name: 'base (after warm-up)', checkpoint: resolve(base), seconds: 0 }, ...finals]) {
  // the runs' own generation limit (the demo's, unless --extra sets one): a shorter one cuts the judge's
  // written check before its verdict and scores the cut items as wrong
  const common = [
    m.checkpoint,
    heldout,
    '--json',
    '--seed',
    String(seed),
    '--max-new-tokens',
    String(maxNewTokens),
  ];
  const tag = m.name.split(' ')[0] as string;
  const reflectText = await spark(['eval', ...common, '--reflect']);
  const judgeText = await spark(['eval', ...common, '--judge']);
  writeFileSync(join(out, `eval-${tag}-reflect.json`), reflectText);
  writeFileSync(join(out, `eval-${tag}-judge.json`), judgeText);
  const r = JSON.parse(reflectText) as ReflectSummary;
  const j = JSON.parse(judgeText) as JudgeSummaryJson;
  const v = r.reflection.verdictCounts;
  rows.push({
    model: m.name,
    checkpoint: m.checkpoint,
    trainSeconds: m.seconds,
    answers: r.withoutReflection.mean,
    answersWithReflection: r.answers.mean,
    reflectionFixed: r.reflection.fixed,
    reflectionBroken: r.reflection.broken,
    selfJudgeAccuracy: r.reflection.verdictAccuracy,
    selfJudgeYesShare: v.yes / Math.max(1, v.yes + v.no + v.other + v.none),
    judgePointwise: j.judge.pointwise.accuracy,
    judgePairwise: j.judge.pairwise.accuracy,
    judgeMean: j.judge.mean,
    diagnostics: {
      yesFirst: j.diagnostics.byOrder.pointwise?.['yes-first'],
      noFirst: j.diagnostics.byOrder.pointwise?.['no-first'],
      near: j.diagnostics.wrongAnswers.near?.pointwise,
      far: j.diagnostics.wrongAnswers.far?.pointwise,
      own: j.diagnostics.wrongAnswers.own?.pointwise,
      auc: j.diagnostics.auc?.styles ?? {},
    },
  });
}

const pct = (x: number) => (100 * x).toFixed(1);

// The in-job evaluations of each run (only when --extra sets evalInterval): judge accuracy against the
// judge prompts trained on so far (pointwise and pairwise reward-phase groups, from the PHASE events).
interface RunResults {
  machine?: Record<string, unknown>;
  spec: { groupSize?: number };
  evals: { step: number; metrics: Record<string, number> }[];
  phases: { step: number; phase: string; metrics: Record<string, number> }[];
}
// what computed the runs (the same machine and environment for all of them: the first run's record)
let machine: Record<string, unknown> | undefined;
const curve = finals.flatMap((f) => {
  const file = join(out, f.name, 'results.json');
  if (!existsSync(file)) return [];
  const r = JSON.parse(readFileSync(file, 'utf8')) as RunResults;
  machine ??= r.machine;
  const groupSize = r.spec.groupSize ?? 1;
  return r.evals.map((e) => {
    const judgePrompts = r.phases
      .filter((p) => p.step < e.step) // the eval at step n follows steps 0 … n−1
      .reduce(
        (n, p) =>
          n + ((p.metrics['samples.pointwise'] ?? 0) + (p.metrics['samples.pairwise'] ?? 0)) / groupSize,
        0,
      );
    const m = e.metrics;
    const pw = m.pointwise_accuracy ?? NaN;
    const pa = m.pairwise_accuracy ?? NaN;
    return {
      model: f.name,
      step: e.step,
      judgePrompts: Math.round(judgePrompts),
      answers: m.answer_accuracy ?? NaN,
      pointwise: pw,
      pairwise: pa,
      judgeMean: (pw + pa) / 2,
    };
  });
});
const header =
  '| model | answers | answers + self-reflection | fixed / broken | self-judge verdicts (Yes share) | judge pointwise | judge pairwise | judge mean |';
const table = [
  header,
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.model} | ${pct(r.answers)} | ${pct(r.answersWithReflection)} | ${r.reflectionFixed} / ${r.reflectionBroken} | ${pct(r.selfJudgeAccuracy)} (${pct(r.selfJudgeYesShare)}) | ${pct(r.judgePointwise)} | ${pct(r.judgePairwise)} | ${pct(r.judgeMean)} |`,
  ),
].join('\n');
const g = (x: DiagGroupJson | undefined, share = false): string =>
  x && x.count > 0 ? `${pct(x.accuracy)}${share ? ` (${pct(x.yesShare)})` : ''}` : '—';
const auc = (x: number | null | undefined): string => (typeof x === 'number' ? x.toFixed(3) : '—');
const diagnostics = [
  '| model | pointwise, Yes/A first (Yes share) | pointwise, No/B first (Yes share) | says wrong: near / far / own | margin AUC yes/no / a/b / pairwise |',
  '| --- | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.model} | ${g(r.diagnostics.yesFirst, true)} | ${g(r.diagnostics.noFirst, true)} | ${g(r.diagnostics.near)} / ${g(r.diagnostics.far)} / ${g(r.diagnostics.own)} | ${auc(r.diagnostics.auc['pointwise-yesno'])} / ${auc(r.diagnostics.auc['pointwise-ab'])} / ${auc(r.diagnostics.auc.pairwise)} |`,
  ),
].join('\n');
const note =
  `${records.length} held-out problems (${heldout}), seed ${seed}, ${steps} RL steps from ${resolve(base)}; ` +
  `${Object.keys(extra).length ? `extra spec ${JSON.stringify(extra)}; ` : ''}` +
  `training wall ${trainSeconds.toFixed(0)} s for the runs together, load average ${load0.toFixed(1)} → ${(loadavg()[0] ?? 0).toFixed(1)}` +
  (machine ? `; machine ${JSON.stringify(machine)}` : '');
const curveTable = curve.length
  ? [
      "\n\nIn-job evaluations (the job's own held-out items; judge prompts = pointwise + pairwise groups trained so far):\n",
      '| model | step | judge prompts trained | answers | judge pointwise | judge pairwise | judge mean |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...curve.map(
        (c) =>
          `| ${c.model} | ${c.step} | ${c.judgePrompts} | ${pct(c.answers)} | ${pct(c.pointwise)} | ${pct(c.pairwise)} | ${pct(c.judgeMean)} |`,
      ),
    ].join('\n')
  : '';
writeFileSync(
  join(out, 'compare.json'),
  JSON.stringify({ seed, steps, base, count, extra, trainSeconds, machine, rows, curve }, null, 2),
);
writeFileSync(
  join(out, 'compare.md'),
  `${table}\n\nJudge diagnostics:\n\n${diagnostics}${curveTable}\n\n${note}\n`,
);
process.stdout.write(`\n${table}\n\n${diagnostics}${curveTable}\n\n${note}\n`);
