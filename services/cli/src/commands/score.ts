// `spark score RESULTS.jsonl`: re-scores a results file with the verifier's lenient equivalence and prints
// the evaluation summary (per dataset accuracy, missing answers, unweighted mean). Works on files written
// by `spark eval` and on files produced elsewhere: each record needs the ground truth (`answer` /
// `ground_truth` / `gt` / `label` / `gold`) and the raw `output` (re-extracted: last `\boxed{}`) or an
// `extracted` answer; `dataset` defaults to "default". Malformed lines are reported and skipped; an empty
// file is an error (exit 1). `--out FILE` writes the summary JSON; `--json` prints it.
import { writeFile } from 'node:fs/promises';

import type { Command } from 'commander';

import { fileChunks } from '@spark/method/datasets';
import {
  formatAccuracyTable,
  readResults,
  ResultsFileError,
  summarize,
  type ProblemResult,
} from '@spark/method/evaluation';

import { intOption } from '../eval/options.js';

interface ScoreCliOptions {
  out?: string;
  json?: boolean;
  budgetMs: string;
}

export async function runScore(file: string, opts: ScoreCliOptions): Promise<void> {
  const budgetMs = intOption('score', 'budget-ms', opts.budgetMs, 60_000);
  let read;
  try {
    read = await readResults(fileChunks(file), file);
  } catch (e) {
    if (e instanceof ResultsFileError) throw e;
    const code = (e as { code?: unknown }).code;
    throw new ResultsFileError(`score: cannot read ${file}: ${typeof code === 'string' ? code : String(e)}`);
  }
  if (read.errorCount > 0) {
    process.stderr.write(`spark score: skipped ${read.errorCount} malformed line(s)\n`);
    for (const e of read.errors.slice(0, 20)) process.stderr.write(`  ${file}:${e.line}: ${e.message}\n`);
  }
  const { Verifier } = await import('@spark/verify'); // lazy: keeps other commands' start-up fast
  const verifier = new Verifier({ budgetMs });
  const scored: ProblemResult[] = [];
  try {
    await verifier.ready();
    for (const r of read.records) {
      const v =
        r.output !== null
          ? await verifier.verify(r.output, r.answer)
          : r.extracted !== null && r.extracted.trim() !== ''
            ? await verifier.verifyAnswer(r.extracted, r.answer)
            : { reward: 0 as const, extracted: null, reason: 'no-answer' };
      scored.push({
        dataset: r.dataset,
        id: r.id,
        problem: r.problem,
        answer: r.answer,
        output: r.output ?? '',
        extracted: v.extracted,
        correct: v.reward === 1,
        reason: v.reason,
      });
    }
  } finally {
    await verifier.close();
  }
  const answers = summarize(scored);
  const summary = { kind: 'score', file, records: scored.length, skipped: read.errorCount, answers };
  if (opts.out !== undefined) await writeFile(opts.out, JSON.stringify(summary, null, 2) + '\n');
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else process.stdout.write(`${formatAccuracyTable(answers)}\n`);
}

export function register(program: Command): void {
  program
    .command('score')
    .description('Re-score a results JSONL file with the verifier and print the evaluation summary')
    .argument('<results>', 'JSONL with dataset, answer (ground truth) and output or extracted')
    .option('--out <file>', 'write the summary JSON to FILE')
    .option('--json', 'print the summary JSON instead of the table')
    .option('--budget-ms <ms>', 'verifier time budget per answer', '50')
    .action(async (file: string, opts: ScoreCliOptions) => {
      await runScore(file, opts);
    });
}
