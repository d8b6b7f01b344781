// `spark eval CHECKPOINT [DATA…]`: reasoning evaluation of a checkpoint (spark-method.md §5) on
// evaluation-format files (`dataset`, `problem`, `answer`, `image_path`; any format the dataset loaders
// read) or the built-in synthetic test split: greedy decoding, the answer-format instruction appended,
// answers scored by the verifier's lenient equivalence; per dataset accuracy and missing answers, and the
// unweighted mean over datasets. `--reflect` adds test-time self-reflection (§4); `--judge` runs the
// reward benchmark instead (checkpoint-independent judge items from the same problems). With `--out DIR`
// writes DIR/results.jsonl (one record per problem or judge item) and DIR/summary.json. In-process.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { Option, type Command } from 'commander';

import { DATASET_FORMATS, type DatasetFormat } from '@spark/common/datasets';
import type { Split } from '@spark/common/tasks';

import { problemsFromFiles, problemsFromSplit, type InputReport } from '../eval/inputs.js';
import { EvalOptionError, intOption, seedOption, variantOption } from '../eval/options.js';
import { runJudge, runProblems } from '../eval/run.js';

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
}

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
  if (opts.reflect && opts.judge)
    throw new EvalOptionError('eval: --reflect and --judge are separate runs; pass one');
  // inputs first: a bad file fails before the model is loaded
  const { problems, report } =
    data.length > 0
      ? await problemsFromFiles(data, opts.format, count)
      : problemsFromSplit(opts.split, count ?? 64, seed);
  reportInput(report);
  // the native model and the verifier load lazily, so `spark --help` and other commands stay fast
  const { loadGenerator } = await import('../eval/model.js');
  const { Verifier } = await import('@spark/verifier');
  const gen = await loadGenerator(checkpoint, { maxNewTokens, batch }, opts.tokenizer);
  const verifier = new Verifier({ budgetMs });
  try {
    await verifier.ready();
    const settings = { checkpoint, variant, batch, maxNewTokens, seed, reflect: opts.reflect ?? false };
    const run = opts.judge
      ? await runJudge(problems, gen.generate, verifier, report, settings)
      : await runProblems(problems, gen.generate, verifier, report, settings);
    const summary = { ...run.summary, generation: { ...gen.stats } };
    if (opts.out !== undefined) await writeOut(opts.out, run.results, summary);
    if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(`${run.table}\n`);
      if (gen.stats.tooLong > 0)
        process.stdout.write(
          `(${gen.stats.tooLong} prompt(s) longer than the model's context: empty output)\n`,
        );
      if (opts.out !== undefined)
        process.stdout.write(`wrote ${join(opts.out, 'results.jsonl')} and summary.json\n`);
    }
  } finally {
    await verifier.close();
    gen.close();
  }
}

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      'Evaluate a checkpoint: answer accuracy per dataset (unweighted mean), optional self-reflection, or the reward benchmark (--judge)',
    )
    .argument('<checkpoint>', 'checkpoint directory (config.json + model.safetensors)')
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
    .option('--max-new-tokens <n>', 'longest output in tokens', '96')
    .option('--batch <n>', 'prompts per native sampling call', '32')
    .option(
      '--tokenizer <spec>',
      '"char" or a tokenizer folder (default: the checkpoint\'s tokenizer.json, else char)',
    )
    .option('--budget-ms <ms>', 'verifier time budget per answer', '50')
    .option('--json', 'print summary.json instead of the table')
    .action(async (checkpoint: string, data: string[], opts: EvalCliOptions) => {
      await runEval(checkpoint, data, opts);
    });
}
