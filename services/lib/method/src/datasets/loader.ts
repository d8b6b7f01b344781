// Dataset loading: streams a JSONL source through the bounded line reader, parses each line in the chosen
// format (or the one detected from the first object), and collects records and per-line errors. Malformed
// lines are reported, never fatal; image records are reported as unsupported (or kept, when allowed);
// an empty input is an error. Everything is bounded: line bytes, field lengths, records, kept errors.
import { InvalidArgumentError } from '@spark/runtime/errors';
import {
  DATASET_FORMATS,
  DEFAULT_JSONL_KEYS,
  detectFormat,
  isRecordError,
  parseRecord,
  type DatasetFormat,
  type DatasetRecord,
  type JsonlKeys,
  type ParseOptions,
  type RecordError,
} from './formats.js';
import { fileChunks, readLines, type ChunkSource } from './lines.js';

/** Thrown when a dataset cannot be read at all: empty input, unknown format, unreadable file. */
export class DatasetError extends InvalidArgumentError {}

/** Options of a load. */
export interface LoadOptions {
  /** The format, or `auto` to detect it from the first JSON object (default `auto`). */
  readonly format?: DatasetFormat | 'auto';
  /** Name recorded as each record's `source` and used in generated ids (default: the path, or `input`). */
  readonly source?: string;
  /** Keys of the plain `jsonl` format (default question/answer). */
  readonly keys?: JsonlKeys;
  /** Keep image records (with `images`) instead of reporting them as unsupported (default false). */
  readonly allowImages?: boolean;
  /** Longest line kept, in bytes (default 1 MiB). */
  readonly maxLineBytes?: number;
  /** Stop after this many records; `truncated` tells (default 1,000,000). */
  readonly maxRecords?: number;
  /** Errors kept in the result; later ones are only counted (default 1,000). */
  readonly maxErrors?: number;
  /** Longest question in characters (default 16,384). */
  readonly maxQuestionChars?: number;
  /** Longest gold answer in characters (default 1,024). */
  readonly maxAnswerChars?: number;
}

/** The result of a load. */
export interface LoadResult {
  readonly format: DatasetFormat;
  readonly records: DatasetRecord[];
  /** The first `maxErrors` per-line errors, in line order. */
  readonly errors: RecordError[];
  /** All errors, including those not kept. */
  readonly errorCount: number;
  /** Records skipped because they carry an image (counted within errorCount). */
  readonly imageRecords: number;
  /** Non-blank lines read. */
  readonly lines: number;
  /** True when `maxRecords` stopped the read early. */
  readonly truncated: boolean;
}

/** One streamed item: a record or a per-line error. */
export type DatasetItem = { readonly record: DatasetRecord } | { readonly error: RecordError };

interface Resolved extends ParseOptions {
  format: DatasetFormat | 'auto';
  maxLineBytes: number;
  maxRecords: number;
  maxErrors: number;
}

function resolve(opts: LoadOptions, fallbackSource: string): Resolved {
  const r: Resolved = {
    format: opts.format ?? 'auto',
    source: opts.source ?? fallbackSource,
    keys: opts.keys ?? DEFAULT_JSONL_KEYS,
    allowImages: opts.allowImages ?? false,
    maxLineBytes: opts.maxLineBytes ?? 1 << 20,
    maxRecords: opts.maxRecords ?? 1_000_000,
    maxErrors: opts.maxErrors ?? 1_000,
    maxQuestionChars: opts.maxQuestionChars ?? 16_384,
    maxAnswerChars: opts.maxAnswerChars ?? 1_024,
  };
  const problems: string[] = [];
  if (r.format !== 'auto' && !DATASET_FORMATS.includes(r.format)) {
    problems.push(`format must be one of auto, ${DATASET_FORMATS.join(', ')}; got ${String(r.format)}`);
  }
  for (const k of ['maxLineBytes', 'maxRecords', 'maxQuestionChars', 'maxAnswerChars'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) problems.push(`${k} must be a positive integer`);
  }
  if (!Number.isInteger(r.maxErrors) || r.maxErrors < 0)
    problems.push('maxErrors must be a non-negative integer');
  if (!r.keys.question || !r.keys.answer) problems.push('keys.question and keys.answer must be non-empty');
  if (problems.length) throw new DatasetError('invalid dataset options', problems);
  return r;
}

/**
 * Streams records and per-line errors from a chunk source. Throws DatasetError when the input has no
 * non-blank line, or when `auto` cannot recognise the first JSON object.
 */
export async function* streamDataset(
  source: ChunkSource,
  opts: LoadOptions = {},
  state: { format?: DatasetFormat; lines?: number; truncated?: boolean } = {},
): AsyncGenerator<DatasetItem> {
  const o = resolve(opts, opts.source ?? 'input');
  let format: DatasetFormat | null = o.format === 'auto' ? null : o.format;
  let lines = 0;
  let records = 0;
  for await (const ev of readLines(source, o.maxLineBytes)) {
    if ('oversized' in ev) {
      lines++;
      yield {
        error: {
          line: ev.line,
          field: null,
          code: 'too-long',
          message: `line has ${ev.oversized} bytes (limit ${o.maxLineBytes})`,
        },
      };
      continue;
    }
    if (ev.text.trim() === '') continue;
    lines++;
    if (records >= o.maxRecords) {
      state.truncated = true;
      break;
    }
    let value: unknown;
    try {
      value = JSON.parse(ev.text);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      yield {
        error: { line: ev.line, field: null, code: 'malformed-json', message: `invalid JSON: ${why}` },
      };
      continue;
    }
    if (format === null) {
      format = detectFormat(value, o.keys);
      if (format === null) {
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          throw new DatasetError(
            `${o.source}: cannot detect the dataset format from line ${ev.line} (keys: ${Object.keys(value)
              .slice(0, 10)
              .join(', ')}); pass format explicitly`,
          );
        }
        yield {
          error: { line: ev.line, field: null, code: 'malformed-json', message: 'line is not a JSON object' },
        };
        continue;
      }
      state.format = format;
    }
    const parsed = parseRecord(value, ev.line, format, o);
    if (isRecordError(parsed)) yield { error: parsed };
    else {
      records++;
      yield { record: parsed };
    }
  }
  state.lines = lines;
  if (lines === 0) throw new DatasetError(`${o.source}: the dataset is empty (no non-blank lines)`);
  if (format !== null) state.format = format;
}

/** Loads a whole chunk source into a LoadResult. */
export async function loadDataset(source: ChunkSource, opts: LoadOptions = {}): Promise<LoadResult> {
  const o = resolve(opts, opts.source ?? 'input');
  const state: { format?: DatasetFormat; lines?: number; truncated?: boolean } = {};
  const records: DatasetRecord[] = [];
  const errors: RecordError[] = [];
  let errorCount = 0;
  let imageRecords = 0;
  for await (const item of streamDataset(source, { ...opts, source: o.source }, state)) {
    if ('record' in item) records.push(item.record);
    else {
      errorCount++;
      if (item.error.code === 'unsupported-image') imageRecords++;
      if (errors.length < o.maxErrors) errors.push(item.error);
    }
  }
  return {
    format: state.format ?? (o.format === 'auto' ? 'jsonl' : o.format),
    records,
    errors,
    errorCount,
    imageRecords,
    lines: state.lines ?? 0,
    truncated: state.truncated ?? false,
  };
}

/** Loads a JSONL file; `source` defaults to the path. Unreadable files throw DatasetError. */
export async function loadDatasetFile(path: string, opts: LoadOptions = {}): Promise<LoadResult> {
  try {
    return await loadDataset(fileChunks(path), { ...opts, source: opts.source ?? path });
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    const code = (e as { code?: unknown }).code;
    throw new DatasetError(
      `cannot read dataset ${path}: ${typeof code === 'string' ? code : String(e)}`,
      [],
      {
        cause: e,
      },
    );
  }
}

/** Loads JSONL text held in memory. */
export async function loadDatasetText(text: string, opts: LoadOptions = {}): Promise<LoadResult> {
  return loadDataset([text], opts);
}
