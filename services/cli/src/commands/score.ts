// `spark score RESULTS`: re-scores a results file with the verifier's lenient equivalence and prints
// the evaluation summary (per dataset accuracy, missing answers, unweighted mean). Works on files written
// by `spark eval` and on files produced elsewhere, JSONL or one JSON array (the reference's evaluation
// files: `ground_truth`, `vlm_output`, `extracted_answer`, `is_correct`): each record needs the ground
// truth (`answer` / `ground_truth` / `gt` / `label` / `gold`) and the raw `output` / `vlm_output` (re-
// extracted: last `\boxed{}`) or an `extracted` / `extracted_answer`; `dataset` defaults to "default". A
// stored `is_correct` is ignored (only its disagreements with the re-score are counted). The fields used
// are printed. Malformed records are reported and skipped; an empty file, or one with no usable record,
// is an error (exit 1). `--out FILE` writes the summary JSON; `--json` prints it.
import { writeFile } from 'node:fs/promises';

import type { Command } from 'commander';

import { fileChunks } from '@spark/method/datasets';
import {
  formatAccuracyTable,
  readResults,
  ResultsFileError,
  summarize,
  type ProblemResult,
  type ResultsRecord,
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
  const unit = read.format === 'json-array' ? 'record' : 'line';
  if (read.errorCount > 0) {
    process.stderr.write(`spark score: skipped ${read.errorCount} malformed ${unit}(s)\n`);
    for (const e of read.errors.slice(0, 20))
      process.stderr.write(`  ${file}:${unit === 'record' ? 'record ' : ''}${e.line}: ${e.message}\n`);
  }
  if (read.records.length === 0)
    throw new ResultsFileError(
      `score: no usable record in ${file} (${read.errorCount} malformed; first: ${read.errors[0]?.message ?? '—'})`,
    );
  const fields = fieldsUsed(read.records);
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
  const stored = read.records.flatMap((r, i) =>
    r.storedCorrect === null ? [] : [r.storedCorrect === (scored[i] as ProblemResult).correct],
  );
  const storedVerdicts = stored.length
    ? { records: stored.length, disagree: stored.filter((agree) => !agree).length }
    : null;
  const summary = {
    kind: 'score',
    file,
    format: read.format,
    records: scored.length,
    skipped: read.errorCount,
    fields,
    storedVerdicts,
    answers,
  };
  if (opts.out !== undefined) await writeFile(opts.out, JSON.stringify(summary, null, 2) + '\n');
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    process.stdout.write(`${formatAccuracyTable(answers)}\n`);
    process.stdout.write(`${describeFields(read.format, fields, storedVerdicts)}\n`);
  }
}

/** How many records took each field, per role (ground truth, output, extracted answer). */
function fieldsUsed(
  records: readonly ResultsRecord[],
): Record<'gold' | 'output' | 'extracted', Record<string, number>> {
  const out = { gold: {}, output: {}, extracted: {} } as Record<
    'gold' | 'output' | 'extracted',
    Record<string, number>
  >;
  for (const r of records) {
    out.gold[r.fields.gold] = (out.gold[r.fields.gold] ?? 0) + 1;
    // the answer compared: the re-extracted output when there is one, else the given extracted answer
    const role = r.output !== null ? 'output' : 'extracted';
    const key = (r.output !== null ? r.fields.output : r.fields.extracted) ?? 'none';
    out[role][key] = (out[role][key] ?? 0) + 1;
  }
  return out;
}

function describeFields(
  format: string,
  f: ReturnType<typeof fieldsUsed>,
  stored: { records: number; disagree: number } | null,
): string {
  const list = (m: Record<string, number>): string =>
    Object.entries(m)
      .map(([k, n]) => `${k} (${n})`)
      .join(', ');
  const lines = [
    `read as ${format}; ground truth from ${list(f.gold)}`,
    ...(Object.keys(f.output).length ? [`re-extracted (last \\boxed{}) from ${list(f.output)}`] : []),
    ...(Object.keys(f.extracted).length ? [`compared as given: ${list(f.extracted)}`] : []),
  ];
  if (stored)
    lines.push(
      `stored verdicts (is_correct) ignored: re-scored with Spark's verifier, which disagrees on ${stored.disagree} of ${stored.records}`,
    );
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('score')
    .description('Re-score a results JSONL file with the verifier and print the evaluation summary')
    .argument(
      '<results>',
      'JSONL or a JSON array: dataset, the ground truth (answer/ground_truth) and output/vlm_output or extracted/extracted_answer',
    )
    .option('--out <file>', 'write the summary JSON to FILE')
    .option('--json', 'print the summary JSON instead of the table')
    .option('--budget-ms <ms>', 'verifier time budget per answer', '50')
    .action(async (file: string, opts: ScoreCliOptions) => {
      await runScore(file, opts);
    });
}
