// Evaluation inputs: problems from evaluation-format (or any loadable) JSONL files, or from the built-in
// synthetic test split. Malformed lines and image records are reported (the first few on stderr, all
// counted in the summary) and skipped; an empty file, or files with no usable record, is an error.
import { basename } from 'node:path';

import {
  DatasetError,
  loadDatasetFile,
  syntheticRecords,
  type DatasetFormat,
  type DatasetRecord,
  type RecordError,
} from '@spark/method/datasets';
import type { EvalProblem } from '@spark/method/evaluation';
import { DEMO_TASK_MIX, type Split, type TaskDatasetOptions } from '@spark/method/tasks';

/** Where the problems came from and what was skipped. */
export interface InputReport {
  readonly source: string;
  readonly records: number;
  /** Lines skipped as malformed or unsupported (images included). */
  readonly skipped: number;
  readonly imageRecords: number;
  /** The first skipped lines, `file:line: message`. */
  readonly errors: readonly string[];
}

const KEPT_ERRORS = 20;

function toProblem(r: DatasetRecord, fallbackDataset: string): EvalProblem {
  return { id: r.id, dataset: r.dataset ?? fallbackDataset, question: r.question, answer: r.answer };
}

/** Loads problems from files (each at most `limit` records when given). */
export async function problemsFromFiles(
  files: readonly string[],
  format: DatasetFormat | 'auto',
  limit?: number,
): Promise<{ problems: EvalProblem[]; report: InputReport }> {
  const problems: EvalProblem[] = [];
  const errors: string[] = [];
  let skipped = 0;
  let imageRecords = 0;
  for (const file of files) {
    const r = await loadDatasetFile(file, { format, ...(limit !== undefined ? { maxRecords: limit } : {}) });
    skipped += r.errorCount;
    imageRecords += r.imageRecords;
    const name = basename(file).replace(/\.jsonl?$/, '');
    for (const rec of r.records) problems.push(toProblem(rec, name));
    for (const e of r.errors as readonly RecordError[]) {
      if (errors.length < KEPT_ERRORS) errors.push(`${file}:${e.line}: ${e.message}`);
    }
  }
  if (problems.length === 0) {
    throw new DatasetError(
      `no usable records in ${files.join(', ')} (${skipped} line(s) skipped${errors[0] ? `; first: ${errors[0]}` : ''})`,
    );
  }
  return {
    problems,
    report: { source: files.join(','), records: problems.length, skipped, imageRecords, errors },
  };
}

/** Problems of the built-in synthetic split, of a task mix (default: the demo mix, every family, levels 1–2). */
export function problemsFromSplit(
  split: Split,
  count: number,
  seed: number,
  mix: Pick<TaskDatasetOptions, 'families' | 'difficulties'> = DEMO_TASK_MIX,
): { problems: EvalProblem[]; report: InputReport } {
  const records = syntheticRecords({ seed, split, count, ...mix });
  return {
    problems: records.map((r) => toProblem(r, 'synthetic')),
    report: {
      source: `synthetic/${split}`,
      records: records.length,
      skipped: 0,
      imageRecords: 0,
      errors: [],
    },
  };
}
