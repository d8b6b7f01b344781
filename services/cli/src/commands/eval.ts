// `spark eval CHECKPOINT [DATA…]`: reasoning evaluation of a checkpoint (docs/method.md "Evaluation") on
// evaluation-format files (`dataset`, `problem`, `answer`, `image_path`; any format the dataset loaders
// read) or the built-in synthetic test split: greedy decoding, the answer-format instruction appended,
// answers scored by the verifier's lenient equivalence; per dataset accuracy and missing answers, and the
// unweighted mean over datasets. `--reflect` adds test-time self-reflection (§4); `--judge` runs the
// reward benchmark instead (checkpoint-independent judge items from the same problems). With `--out DIR`
// writes DIR/results.jsonl (one record per problem or judge item) and DIR/summary.json. In-process, or with
// `--address HOST:PORT` through a running cluster: generation is spread over its rollout workers
// (JobService.Generate, eval/cluster.ts) and scoring stays here.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { Option, type Command } from 'commander';

import { DATASET_FORMATS, type DatasetFormat } from '@spark/method/datasets';
import { DEMO_TASK_MIX, type Difficulty, type Family, type Split } from '@spark/method/tasks';

import type { clusterGenerator } from '../eval/cluster.js';
import { problemsFromFiles, problemsFromSplit, type InputReport } from '../eval/inputs.js';
import {
  difficultiesOption,
  EvalOptionError,
  familiesOption,
  intOption,
  seedOption,
  variantOption,
} from '../eval/options.js';
import { runJudge, runProblems, type JudgeExtras } from '../eval/run.js';

interface EvalCliOptions {
  split: Split;
  count?: string;
  seed: string;
  format: DatasetFormat | 'auto';
  out?: string;
  reflect?: boolean;
  judge?: boolean;
  variant: string;
  maxNewTokens: string;
  batch: string;
  tokenizer?: string;
  budgetMs: string;
  json?: boolean;
  address?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  inFlight: string;
  ownDraws: string;
  families?: string;
  difficulties?: string;
}

/** Deadline of one Generate call in cluster mode (the coordinator's own bound is 300 s by default). */
const GENERATE_DEADLINE_MS = 330_000;

/** Writes results as JSONL and the summary as JSON into DIR. */
async function writeOut(dir: string, results: readonly unknown[], summary: unknown): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'results.jsonl'),
    results.map((r) => JSON.stringify(r)).join('\n') + (results.length ? '\n' : ''),
  );
  await writeFile(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
}

function reportInput(input: InputReport): void {
  if (input.skipped === 0) return;
  process.stderr.write(
    `spark eval: skipped ${input.skipped} line(s) (${input.imageRecords} with images, unsupported by text models)\n`,
  );
  for (const e of input.errors) process.stderr.write(`  ${e}\n`);
}

export async function runEval(
  checkpoint: string,
  data: readonly string[],
  opts: EvalCliOptions,
): Promise<void> {
  const maxNewTokens = intOption('eval', 'max-new-tokens', opts.maxNewTokens, 4096);
  const batch = intOption('eval', 'batch', opts.batch, 4096);
  const budgetMs = intOption('eval', 'budget-ms', opts.budgetMs, 60_000);
  const seed = seedOption('eval', opts.seed);
  const count = opts.count !== undefined ? intOption('eval', 'count', opts.count, 100_000) : undefined;
  const variant = variantOption(opts.variant);
  const ownDraws = opts.ownDraws === '0' ? 0 : intOption('eval', 'own-draws', opts.ownDraws, 64);
  if (opts.reflect && opts.judge)
    throw new EvalOptionError('eval: --reflect and --judge are separate runs; pass one');
  const families = opts.families !== undefined ? familiesOption('eval', opts.families) : undefined;
  const difficulties =
    opts.difficulties !== undefined ? difficultiesOption('eval', opts.difficulties) : undefined;
  if (data.length > 0 && (families || difficulties))
    throw new EvalOptionError(
      'eval: --families and --difficulties choose the built-in split; they do not apply to DATA files',
    );
  // inputs first: a bad file fails before the model is loaded
  const taskMix = data.length > 0 ? null : await evalTaskMix(checkpoint, families, difficulties);
  const { problems, report } =
    data.length > 0
      ? await problemsFromFiles(data, opts.format, count)
      : problemsFromSplit(
          opts.split,
          count ?? 64,
          seed,
          taskMix ? { families: taskMix.families, difficulties: taskMix.difficulties } : undefined,
        );
  reportInput(report);
  if (checkpoint.startsWith('job:') && opts.address === undefined)
    throw new EvalOptionError(
      `eval: ${checkpoint.slice(0, 200)} names a checkpoint in a cluster's object store; pass --address HOST:PORT of that cluster (or a checkpoint directory)`,
    );
  // the native model and the verifier load lazily, so `spark --help` and other commands stay fast
  const gen = opts.address !== undefined ? await clusterGen(checkpoint, opts, maxNewTokens, batch) : null;
  const local = gen
    ? null
    : await (
        await import('@spark/method/checkpoint')
      ).loadGenerator(checkpoint, { maxNewTokens, batch }, opts.tokenizer);
  const generate = (gen ?? (local as NonNullable<typeof local>)).generate;
  const stats = gen?.stats ?? (local as NonNullable<typeof local>).stats;
  const { Verifier } = await import('@spark/verify');
  const verifier = new Verifier({ budgetMs });
  try {
    await verifier.ready();
    // in cluster mode each round carries batch × in-flight prompts, split over the Generate calls
    const roundBatch = gen ? batch * gen.inFlight : batch;
    const settings = {
      checkpoint,
      variant,
      batch,
      maxNewTokens,
      seed,
      reflect: opts.reflect ?? false,
      ...(taskMix ? { taskMix } : {}),
      ...(gen ? { cluster: { address: gen.address, inFlight: gen.inFlight } } : {}),
    };
    const extras: JudgeExtras = local
      ? {
          // own mistakes: answers sampled at temperature 1.0, one seed per draw; the margin AUC by log-probs
          sample: (prompts, draw) => local.generate(prompts, { temperature: 1, seed: 1 + draw }),
          sampling: 'temperature 1.0',
          ownDraws,
          score: local.score,
        }
      : // a cluster generates greedily and scores no log-probs: own mistakes are the greedy answers
        { sample: (prompts) => generate(prompts), sampling: 'greedy', ownDraws: Math.min(ownDraws, 1) };
    const run = opts.judge
      ? await runJudge(problems, generate, verifier, report, { ...settings, ownDraws }, roundBatch, extras)
      : await runProblems(problems, generate, verifier, report, settings, roundBatch);
    const summary = { ...run.summary, generation: { ...stats } };
    if (opts.out !== undefined) await writeOut(opts.out, run.results, summary);
    if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(`${run.table}\n`);
      if (stats.tooLong > 0)
        process.stdout.write(`(${stats.tooLong} prompt(s) longer than the model's context: empty output)\n`);
      if (gen)
        process.stdout.write(
          `generated on ${Object.keys(gen.stats.workers).length} rollout worker(s) of ${gen.address}: ` +
            `${Object.entries(gen.stats.workers)
              .map(([w, n]) => `${w} ${n}`)
              .join(', ')}\n`,
        );
      if (opts.out !== undefined)
        process.stdout.write(`wrote ${join(opts.out, 'results.jsonl')} and summary.json\n`);
    }
  } finally {
    await verifier.close();
    local?.close();
    gen?.close();
  }
}

/** The built-in split's task mix, and where it came from. */
interface EvalTaskMix {
  readonly families: readonly Family[];
  readonly difficulties: readonly Difficulty[];
  /** `flags`, `checkpoint` (its trainer_state.json), or `default` (the demo mix). */
  readonly from: 'flags' | 'checkpoint' | 'default' | 'flags+checkpoint' | 'flags+default';
}

/**
 * The built-in split's task mix: the one the checkpoint was trained on (trainer_state.json's taskMix),
 * else the demo mix; `--families` / `--difficulties` override either part.
 */
async function evalTaskMix(
  checkpoint: string,
  families: readonly Family[] | undefined,
  difficulties: readonly Difficulty[] | undefined,
): Promise<EvalTaskMix> {
  let base: { families: readonly Family[]; difficulties: readonly Difficulty[] } | null = null;
  let note = '';
  if (!families || !difficulties) {
    const { readTaskMix, CheckpointLoadError } = await import('@spark/method/checkpoint');
    try {
      const mix = await readTaskMix(checkpoint);
      if (mix && mix.dataset === 'builtin' && mix.families.length > 0 && mix.difficulties.length > 0)
        base = {
          families: mix.families as Family[],
          difficulties: mix.difficulties as Difficulty[],
        };
      else if (mix && mix.dataset !== 'builtin')
        note = `the checkpoint was trained on ${mix.dataset}: pass it (or its held-out part) as DATA to evaluate on it`;
    } catch (e) {
      // a checkpoint only the cluster's workers can read (--address) has no local trainer_state.json
      if (!(e instanceof CheckpointLoadError && e.notFound)) throw e;
    }
  }
  const fromBase = base ? 'checkpoint' : 'default';
  const mix = {
    families: families ?? base?.families ?? DEMO_TASK_MIX.families ?? [],
    difficulties: difficulties ?? base?.difficulties ?? DEMO_TASK_MIX.difficulties ?? [],
  };
  const from: EvalTaskMix['from'] =
    families && difficulties ? 'flags' : families || difficulties ? `flags+${fromBase}` : fromBase;
  process.stderr.write(
    `spark eval: task mix ${mix.families.join(',')} at level(s) ${mix.difficulties.join(',')} (${from === 'default' ? 'the demo mix' : from === 'checkpoint' ? "the checkpoint's" : from})${note ? `; ${note}` : ''}\n`,
  );
  return { ...mix, from };
}

/** The cluster generator of `--address` (no model is loaded here). */
async function clusterGen(
  checkpoint: string,
  opts: EvalCliOptions,
  maxNewTokens: number,
  batch: number,
): Promise<ReturnType<typeof clusterGenerator> & { address: string; inFlight: number; close(): void }> {
  // loaded here, not at start-up: the cluster contract pulls in BullMQ and gRPC
  const { GENERATE_LIMITS } = await import('@spark/contract');
  const { clusterGenerator } = await import('../eval/cluster.js');
  if (batch > GENERATE_LIMITS.maxPrompts)
    throw new EvalOptionError(
      `eval: --batch must be at most ${GENERATE_LIMITS.maxPrompts} with --address (prompts per Generate call), got ${batch}`,
    );
  const inFlight = intOption('eval', 'in-flight', opts.inFlight, 64);
  const { JobClient, resolveConnect } = await import('../client/index.js');
  const client = new JobClient(
    resolveConnect({
      address: opts.address as string,
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      ...(opts.tlsCa !== undefined ? { tlsCa: opts.tlsCa } : {}),
      ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
      ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
    }),
  );
  const g = clusterGenerator(client, {
    checkpoint,
    maxNewTokens,
    batch,
    inFlight,
    deadlineMs: GENERATE_DEADLINE_MS,
    ...(opts.tokenizer !== undefined ? { tokenizer: opts.tokenizer } : {}),
  });
  return { ...g, address: client.address, inFlight, close: () => client.close() };
}

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      'Evaluate a checkpoint: answer accuracy per dataset (unweighted mean), optional self-reflection, or the reward benchmark (--judge)',
    )
    .argument(
      '<checkpoint>',
      "checkpoint directory (config.json + model.safetensors); with --address also job:<jobId>[/<dir>]: the job's latest (or named) checkpoint in the cluster's object store",
    )
    .argument(
      '[data...]',
      'evaluation JSONL files (dataset, problem, answer, image_path); default: the built-in split',
    )
    .addOption(
      new Option('--split <split>', 'built-in split when no DATA is given')
        .choices(['test', 'train'])
        .default('test'),
    )
    .option('--count <n>', 'problems (built-in split: default 64; files: at most N records per file)')
    .option(
      '--families <list>',
      "built-in split: task families, comma-separated (default: the checkpoint's task mix, else every family)",
    )
    .option(
      '--difficulties <list>',
      "built-in split: difficulty levels, comma-separated (default: the checkpoint's task mix, else 1,2)",
    )
    .option('--seed <n>', 'seed of the built-in split and of judge template draws', '0')
    .addOption(
      new Option('--format <format>', 'format of DATA files')
        .choices(['auto', ...DATASET_FORMATS])
        .default('auto'),
    )
    .option('--out <dir>', 'write DIR/results.jsonl and DIR/summary.json')
    .option('--reflect', 'test-time self-reflection: self-judge, re-solve unless "Yes", at most 2 rounds')
    .option('--judge', 'reward benchmark: judge accuracy on pointwise (yes/no, a/b) and pairwise items')
    .addOption(
      new Option('--variant <variant>', 'prompt wording').choices(['short', 'full']).default('short'),
    )
    .option(
      '--max-new-tokens <n>',
      "longest output in tokens (the judge's written check takes up to 107)",
      '128',
    )
    .option('--batch <n>', 'prompts per native sampling call', '32')
    .option(
      '--tokenizer <spec>',
      '"char" or a tokenizer folder (default: the checkpoint\'s tokenizer.json, else char)',
    )
    .option('--budget-ms <ms>', 'verifier time budget per answer', '50')
    .option('--json', 'print summary.json instead of the table')
    .option(
      '--address <host:port>',
      "generate on a running cluster's rollout workers (coordinator JobService address); CHECKPOINT must be readable by them",
    )
    .option('--token <token>', 'bearer token of the cluster (default: $SPARK_AUTH_TOKEN)')
    .option('--tls-ca <file>', 'PEM CA file: connect with TLS and trust this CA')
    .option('--tls-cert <file>', 'PEM client certificate (mTLS)')
    .option('--tls-key <file>', 'PEM client key (mTLS)')
    .option('--in-flight <n>', 'with --address: Generate calls at once (about 2 × rollout workers)', '4')
    .option(
      '--own-draws <n>',
      "with --judge: answers sampled per problem to find the model's own mistakes (0: none; with --address: greedy, at most 1)",
      '4',
    )
    .action(async (checkpoint: string, data: string[], opts: EvalCliOptions) => {
      await runEval(checkpoint, data, opts);
    });
}
