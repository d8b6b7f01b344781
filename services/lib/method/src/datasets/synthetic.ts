// The embedded default dataset in the common record shape: generated problems (see ../tasks) as
// DatasetRecords whose `dataset` names the family (`syn-add`, …) so evaluation reports accuracy per family.
import { iterateTasks, type TaskDatasetOptions, type TaskProblem } from '../tasks/index.js';
import type { DatasetRecord } from './formats.js';

/** The record of a generated problem (its worked solution kept for supervised warm-up). */
export function taskToRecord(p: TaskProblem, source = 'synthetic'): DatasetRecord {
  return {
    id: p.id,
    question: p.question,
    answer: p.answer,
    source,
    dataset: `syn-${p.family}`,
    solution: p.solution,
  };
}

/** Generated problems of one split as records. */
export function syntheticRecords(opts: TaskDatasetOptions): DatasetRecord[] {
  const out: DatasetRecord[] = [];
  for (const p of iterateTasks(opts)) out.push(taskToRecord(p, `synthetic/${opts.split}`));
  return out;
}
