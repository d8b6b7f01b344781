// Reading results files for re-scoring (`spark score`): records produced by `spark eval` or elsewhere,
// as JSONL or as one JSON array (the reference's evaluation files: `dataset`, `problem`, `image_path`,
// `ground_truth`, `vlm_output`, `extracted_answer`, `is_correct`). A record needs the ground truth
// (`answer`, or `ground_truth` / `gt` / `label` / `gold`) and the model's answer: the raw `output` (or
// `response` / `prediction` / `vlm_output`), re-extracted and re-scored, or an already `extracted` answer
// (or `extracted_answer` / `pred`). A stored verdict (`is_correct` / `correct`) is never used for the
// score; it is kept only to count how often it disagrees. `dataset` defaults to "default"; `problem` (or
// `question`) and `id` are kept when present. Malformed records are reported one by one, never fatal; an
// input with no record is an error. Everything is bounded: line bytes, array bytes and kept errors.
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
  /** The fields this record's ground truth, output and extracted answer came from. */
  readonly fields: {
    readonly gold: string;
    readonly output: string | null;
    readonly extracted: string | null;
  };
  /** The file's own verdict (`is_correct` / `correct`), when it has a boolean one: never used to score. */
  readonly storedCorrect: boolean | null;
}

/** Why a results line was skipped. */
export interface ResultsLineError {
  readonly line: number;
  readonly message: string;
}

/** Thrown when a results file cannot be used at all (empty, unreadable). */
export class ResultsFileError extends InvalidArgumentError {}

const GOLD_KEYS = ['answer', 'ground_truth', 'gt', 'label', 'gold'] as const;
const OUTPUT_KEYS = ['output', 'response', 'prediction', 'vlm_output'] as const;
const EXTRACTED_KEYS = ['extracted', 'extracted_answer', 'pred'] as const;
const STORED_VERDICT_KEYS = ['is_correct', 'correct'] as const;
/** Largest JSON-array results file read (a JSONL file is read line by line, without this bound). */
export const MAX_RESULTS_ARRAY_BYTES = 256 << 20;
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
  return parseResultsValue(v, line);
}

/** Parses one JSON value (a line's, or an array element's) into a record or an error message. */
export function parseResultsValue(v: unknown, line: number): ResultsRecord | ResultsLineError {
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
  const extKey = EXTRACTED_KEYS.find((k) => k in o);
  if (!out && !ext && extKey === undefined)
    return { line, message: `no model answer (one of ${[...OUTPUT_KEYS, ...EXTRACTED_KEYS].join(', ')})` };
  const stored = STORED_VERDICT_KEYS.map((k) => o[k]).find((x) => typeof x === 'boolean');
  const dataset = text(o['dataset']) ?? 'default';
  return {
    line,
    dataset: dataset.trim() || 'default',
    id: text(o['id']) ?? `line-${line}`,
    problem: text(o['problem']) ?? text(o['question']) ?? '',
    answer: answer.trim(),
    output,
    extracted,
    fields: { gold: gold.key, output: out?.key ?? null, extracted: ext?.key ?? extKey ?? null },
    storedCorrect: typeof stored === 'boolean' ? stored : null,
  };
}

/** Reads a results stream (JSONL, or one JSON array of records): records, the first errors, the error count. */
export async function readResults(
  source: ChunkSource,
  name: string,
  maxLineBytes = 4 << 20,
  maxArrayBytes = MAX_RESULTS_ARRAY_BYTES,
): Promise<{
  records: ResultsRecord[];
  errors: ResultsLineError[];
  errorCount: number;
  format: 'jsonl' | 'json-array';
}> {
  const records: ResultsRecord[] = [];
  const errors: ResultsLineError[] = [];
  let errorCount = 0;
  const add = (r: ResultsRecord | ResultsLineError): void => {
    if ('message' in r) {
      errorCount++;
      if (errors.length < MAX_ERRORS) errors.push(r);
    } else records.push(r);
  };
  // peek at the first non-blank character: '[' is a JSON array, anything else JSONL
  const it = (
    Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source)
  ) as AsyncIterator<Uint8Array | string>;
  const decoder = new TextDecoder();
  const head: (Uint8Array | string)[] = [];
  let first: string | undefined;
  let bytes = 0;
  while (first === undefined) {
    const n = await it.next();
    if (n.done) break;
    head.push(n.value);
    bytes += typeof n.value === 'string' ? n.value.length : n.value.byteLength;
    const text = typeof n.value === 'string' ? n.value : decoder.decode(n.value, { stream: true });
    const m = /\S/.exec(text);
    if (m) first = m[0];
  }
  if (first === '[') {
    // decoded again from the start: the peek's decoder has consumed the head
    const bin = new TextDecoder();
    const textOf = (c: Uint8Array | string): string =>
      typeof c === 'string' ? c : bin.decode(c, { stream: true });
    const parts = head.map(textOf);
    for (let n = await it.next(); !n.done; n = await it.next()) {
      bytes += typeof n.value === 'string' ? n.value.length : n.value.byteLength;
      if (bytes > maxArrayBytes)
        throw new ResultsFileError(
          `${name}: a JSON-array results file over ${maxArrayBytes} bytes; write it as JSONL (one record per line)`,
        );
      parts.push(textOf(n.value));
    }
    if (bytes > maxArrayBytes)
      throw new ResultsFileError(
        `${name}: a JSON-array results file over ${maxArrayBytes} bytes; write it as JSONL (one record per line)`,
      );
    let all: unknown;
    try {
      all = JSON.parse(parts.join('') + bin.decode());
    } catch (e) {
      throw new ResultsFileError(
        `${name}: starts with '[' but is not a valid JSON array: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    if (!Array.isArray(all)) throw new ResultsFileError(`${name}: not a JSON array`);
    if (all.length === 0)
      throw new ResultsFileError(`${name}: the results file is empty (an empty JSON array)`);
    all.forEach((v, i) => add(parseResultsValue(v, i + 1)));
    return { records, errors, errorCount, format: 'json-array' };
  }
  async function* replay(): AsyncGenerator<Uint8Array | string> {
    yield* head;
    for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
  }
  let lines = 0;
  for await (const ev of readLines(replay(), maxLineBytes)) {
    let r: ResultsRecord | ResultsLineError;
    if ('oversized' in ev)
      r = { line: ev.line, message: `line has ${ev.oversized} bytes (limit ${maxLineBytes})` };
    else if (ev.text.trim() === '') continue;
    else r = parseResultsLine(ev.text, ev.line);
    lines++;
    add(r);
  }
  if (lines === 0) throw new ResultsFileError(`${name}: the results file is empty (no non-blank lines)`);
  return { records, errors, errorCount, format: 'jsonl' };
}

async function* toAsync<T>(xs: Iterable<T>): AsyncGenerator<T> {
  yield* xs;
}
