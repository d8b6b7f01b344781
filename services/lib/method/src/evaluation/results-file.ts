// Reading results files for re-scoring (`spark score`): JSONL records produced by `spark eval` or
// elsewhere. A record needs the ground truth (`answer`, or `ground_truth` / `gt` / `label` /
// `gold`) and the model's answer: the raw `output` (or `response` / `prediction`), re-extracted and
// re-scored, or an already `extracted` answer (or `pred`). `dataset` defaults to "default"; `problem`
// (or `question`) and `id` are kept when present. Malformed lines are reported per line, never fatal; an
// input with no non-blank line is an error. Everything is bounded: line bytes and kept errors.
import { InvalidArgumentError } from '@spark/runtime/errors';
import { readLines, type ChunkSource } from '../datasets/index.js';

/** A results record to re-score. */
export interface ResultsRecord {
  readonly line: number;
  readonly dataset: string;
  readonly id: string;
  readonly problem: string;
  readonly answer: string;
  /** The raw output to re-extract from, when present. */
  readonly output: string | null;
  /** The extracted answer given in the file, when present (used when there is no output). */
  readonly extracted: string | null;
}

/** Why a results line was skipped. */
export interface ResultsLineError {
  readonly line: number;
  readonly message: string;
}

/** Thrown when a results file cannot be used at all (empty, unreadable). */
export class ResultsFileError extends InvalidArgumentError {}

const GOLD_KEYS = ['answer', 'ground_truth', 'gt', 'label', 'gold'] as const;
const OUTPUT_KEYS = ['output', 'response', 'prediction'] as const;
const EXTRACTED_KEYS = ['extracted', 'pred'] as const;
const MAX_ERRORS = 1_000;

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

function first(o: Record<string, unknown>, keys: readonly string[]): { key: string; value: unknown } | null {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return { key: k, value: o[k] };
  return null;
}

/** Parses one line into a record or an error message. */
export function parseResultsLine(textLine: string, line: number): ResultsRecord | ResultsLineError {
  let v: unknown;
  try {
    v = JSON.parse(textLine);
  } catch (e) {
    return { line, message: `invalid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { line, message: 'not a JSON object' };
  const o = v as Record<string, unknown>;
  const gold = first(o, GOLD_KEYS);
  if (!gold) return { line, message: `no ground truth (one of ${GOLD_KEYS.join(', ')})` };
  const answer = text(gold.value);
  if (answer === null || answer.trim() === '')
    return { line, message: `"${gold.key}" must be a non-empty string or number` };
  const out = first(o, OUTPUT_KEYS);
  const ext = first(o, EXTRACTED_KEYS);
  const output = out ? text(out.value) : null;
  if (out && output === null) return { line, message: `"${out.key}" must be a string` };
  const extracted = ext ? text(ext.value) : null;
  if (ext && extracted === null) return { line, message: `"${ext.key}" must be a string or number` };
  if (!out && !ext && !('extracted' in o))
    return { line, message: `no model answer (one of ${[...OUTPUT_KEYS, ...EXTRACTED_KEYS].join(', ')})` };
  const dataset = text(o['dataset']) ?? 'default';
  return {
    line,
    dataset: dataset.trim() || 'default',
    id: text(o['id']) ?? `line-${line}`,
    problem: text(o['problem']) ?? text(o['question']) ?? '',
    answer: answer.trim(),
    output,
    extracted,
  };
}

/** Reads a results stream: records, the first errors, and the error count. */
export async function readResults(
  source: ChunkSource,
  name: string,
  maxLineBytes = 4 << 20,
): Promise<{ records: ResultsRecord[]; errors: ResultsLineError[]; errorCount: number }> {
  const records: ResultsRecord[] = [];
  const errors: ResultsLineError[] = [];
  let errorCount = 0;
  let lines = 0;
  for await (const ev of readLines(source, maxLineBytes)) {
    let r: ResultsRecord | ResultsLineError;
    if ('oversized' in ev)
      r = { line: ev.line, message: `line has ${ev.oversized} bytes (limit ${maxLineBytes})` };
    else if (ev.text.trim() === '') continue;
    else r = parseResultsLine(ev.text, ev.line);
    lines++;
    if ('message' in r) {
      errorCount++;
      if (errors.length < MAX_ERRORS) errors.push(r);
    } else records.push(r);
  }
  if (lines === 0) throw new ResultsFileError(`${name}: the results file is empty (no non-blank lines)`);
  return { records, errors, errorCount };
}
