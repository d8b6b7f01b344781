// Record parsers of the dataset formats Spark reads, each mapping one JSON value to the common record
// type or to a per-line error naming the field:
//   spark  — training data: `message` (a JSON-encoded chat list, or the list itself) + `answer`;
//   eval   — evaluation data: `dataset`, `problem`, `answer`, `image_path`;
//   gsm8k  — `question` + `answer` whose gold follows the last `####`;
//   math   — `problem` + `solution` whose gold is the last `\boxed{…}` (an `answer` field wins if present);
//   jsonl  — plain objects with configurable keys (default `question` / `answer`).
// Image items are recognised everywhere and reported as unsupported unless the caller allows images.
import { lastBoxed } from './boxed.js';

/** The common record every loader produces. */
export interface DatasetRecord {
  /** The record's own `id` when it has one, else `<source>:<line>`. */
  readonly id: string;
  /** The question text (without any answer-format instruction). */
  readonly question: string;
  /** The gold answer as a string. */
  readonly answer: string;
  /** Where it came from: a file path, a generator name. */
  readonly source: string;
  /** The benchmark / sub-dataset name, when the format has one. */
  readonly dataset?: string;
  /** A reference solution (GSM8K rationale, MATH solution, synthetic worked solution). */
  readonly solution?: string;
  /** A system message of a SPARK chat record. */
  readonly system?: string;
  /** Image paths (only when the caller allowed images; text models cannot use them). */
  readonly images?: readonly string[];
  /** 1-based line number in the source, for file inputs. */
  readonly line?: number;
}

export const DATASET_FORMATS = ['spark', 'eval', 'gsm8k', 'math', 'jsonl'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/** Why a line produced no record. */
export type RecordErrorCode =
  | 'malformed-json' // the line is not JSON, or not an object
  | 'missing-field' // a required field is absent
  | 'invalid-field' // a field has the wrong type or shape
  | 'too-long' // a line or a field exceeds its bound
  | 'no-answer' // the gold answer could not be extracted (no `####`, no `\boxed{}`)
  | 'unsupported-image'; // the record has an image and the caller reads text only

/** A per-line error: the line, the offending field (null for the whole line) and a message. */
export interface RecordError {
  readonly line: number;
  readonly field: string | null;
  readonly code: RecordErrorCode;
  readonly message: string;
}

/** Key names of the plain `jsonl` format. */
export interface JsonlKeys {
  readonly question: string;
  readonly answer: string;
  readonly id?: string;
  readonly dataset?: string;
  readonly image?: string;
  readonly solution?: string;
}

export const DEFAULT_JSONL_KEYS: JsonlKeys = { question: 'question', answer: 'answer' };

/** Bounds and switches of record parsing. */
export interface ParseOptions {
  readonly source: string;
  readonly keys: JsonlKeys;
  readonly allowImages: boolean;
  readonly maxQuestionChars: number;
  readonly maxAnswerChars: number;
}

type Obj = Record<string, unknown>;
type Parsed = DatasetRecord | RecordError;

/** Thrown inside a parser to turn into a RecordError; never escapes `parseRecord`. */
class FieldError extends Error {
  constructor(
    readonly field: string | null,
    readonly code: RecordErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function requiredText(o: Obj, field: string, max: number, allowNumber = false): string {
  if (!(field in o) || o[field] === null || o[field] === undefined) {
    throw new FieldError(field, 'missing-field', `missing required field "${field}"`);
  }
  const v = o[field];
  let s: string;
  if (typeof v === 'string') s = v;
  else if (allowNumber && typeof v === 'number' && Number.isFinite(v)) s = String(v);
  else
    throw new FieldError(
      field,
      'invalid-field',
      `"${field}" must be a ${allowNumber ? 'string or number' : 'string'}`,
    );
  s = s.trim();
  if (s.length === 0) throw new FieldError(field, 'invalid-field', `"${field}" is empty`);
  if (s.length > max)
    throw new FieldError(field, 'too-long', `"${field}" has ${s.length} chars (limit ${max})`);
  return s;
}

function optionalText(o: Obj, field: string): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') throw new FieldError(field, 'invalid-field', `"${field}" must be a string`);
  return v.trim() || undefined;
}

function imageCheck(images: string[], field: string, opts: ParseOptions): string[] | undefined {
  if (images.length === 0) return undefined;
  if (!opts.allowImages) {
    throw new FieldError(
      field,
      'unsupported-image',
      `record has an image (${images[0]?.slice(0, 200)}); text models cannot use images, record not loaded`,
    );
  }
  return images;
}

function withCommon(
  base: { question: string; answer: string },
  o: Obj,
  line: number,
  opts: ParseOptions,
  extra: { readonly [K in 'dataset' | 'solution' | 'system' | 'images']?: DatasetRecord[K] | undefined },
  idField = 'id',
): DatasetRecord {
  const id = optionalText(o, idField) ?? `${opts.source}:${line}`;
  const rec: { -readonly [K in keyof DatasetRecord]: DatasetRecord[K] } = {
    id,
    question: base.question,
    answer: base.answer,
    source: opts.source,
    line,
  };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) (rec as Record<string, unknown>)[k] = v;
  return rec;
}

// ---- spark ----------------------------------------------------------------------------------------------

function parseSpark(o: Obj, line: number, opts: ParseOptions): DatasetRecord {
  if (!('message' in o)) throw new FieldError('message', 'missing-field', 'missing required field "message"');
  let chat: unknown = o.message;
  if (typeof chat === 'string') {
    try {
      chat = JSON.parse(chat);
    } catch {
      throw new FieldError('message', 'invalid-field', '"message" is not a JSON-encoded chat list');
    }
  }
  if (!Array.isArray(chat) || chat.length === 0) {
    throw new FieldError('message', 'invalid-field', '"message" must be a non-empty list of {role, content}');
  }
  let question = null as string | null;
  let system: string | undefined;
  const images: string[] = [];
  for (const [i, m] of (chat as unknown[]).entries()) {
    const where = `message[${i}]`;
    if (!isObj(m) || typeof m.role !== 'string') {
      throw new FieldError(where, 'invalid-field', `${where} must be an object with a string "role"`);
    }
    const texts: string[] = [];
    if (typeof m.content === 'string') texts.push(m.content);
    else if (Array.isArray(m.content)) {
      m.content.forEach((item: unknown, j: number) => {
        const w = `${where}.content[${j}]`;
        if (!isObj(item)) throw new FieldError(w, 'invalid-field', `${w} must be an object`);
        if (item.type === 'text') {
          if (typeof item.text !== 'string')
            throw new FieldError(w, 'invalid-field', `${w}.text must be a string`);
          texts.push(item.text);
        } else if (item.type === 'image' || item.type === 'image_url') {
          const ref = item.image ?? item.image_url;
          images.push(
            typeof ref === 'string' ? ref : isObj(ref) && typeof ref.url === 'string' ? ref.url : '<image>',
          );
        } else {
          throw new FieldError(w, 'invalid-field', `${w} has unknown type ${JSON.stringify(item.type)}`);
        }
      });
    } else
      throw new FieldError(
        `${where}.content`,
        'invalid-field',
        `${where}.content must be a string or a list`,
      );
    const text = texts.join('\n').trim();
    if (m.role === 'user') {
      if (question !== null) throw new FieldError(where, 'invalid-field', 'more than one user message');
      question = text;
    } else if (m.role === 'system') system = text;
    else
      throw new FieldError(
        where,
        'invalid-field',
        `unexpected role ${JSON.stringify(m.role)} (user/system only)`,
      );
  }
  if (question === null) throw new FieldError('message', 'invalid-field', 'no user message');
  const q: string = question;
  if (q.length === 0) {
    const field = 'message';
    if (images.length) imageCheck(images, field, opts);
    throw new FieldError(field, 'invalid-field', 'the user message has no text');
  }
  if (q.length > opts.maxQuestionChars) {
    throw new FieldError(
      'message',
      'too-long',
      `question has ${q.length} chars (limit ${opts.maxQuestionChars})`,
    );
  }
  const answer = requiredText(o, 'answer', opts.maxAnswerChars, true);
  return withCommon({ question: q, answer }, o, line, opts, {
    system,
    images: imageCheck(images, 'message', opts),
    dataset: optionalText(o, 'dataset'),
  });
}

// ---- eval -----------------------------------------------------------------------------------------------

function parseEval(o: Obj, line: number, opts: ParseOptions): DatasetRecord {
  const dataset = requiredText(o, 'dataset', 256);
  const question = requiredText(o, 'problem', opts.maxQuestionChars);
  const answer = requiredText(o, 'answer', opts.maxAnswerChars, true);
  const image = optionalText(o, 'image_path');
  return withCommon({ question, answer }, o, line, opts, {
    dataset,
    images: imageCheck(image ? [image] : [], 'image_path', opts),
  });
}

// ---- gsm8k ----------------------------------------------------------------------------------------------

const THOUSANDS = /^-?\d{1,3}(,\d{3})+(\.\d+)?$/;

/** The GSM8K gold: the text after the last `####`, thousands separators removed from a plain number. */
export function gsm8kAnswer(answerField: string): string | null {
  const at = answerField.lastIndexOf('####');
  if (at < 0) return null;
  const gold = answerField.slice(at + 4).trim();
  if (gold.length === 0) return null;
  return THOUSANDS.test(gold) ? gold.replace(/,/g, '') : gold;
}

function parseGsm8k(o: Obj, line: number, opts: ParseOptions): DatasetRecord {
  const question = requiredText(o, 'question', opts.maxQuestionChars);
  const raw = requiredText(o, 'answer', opts.maxQuestionChars * 4, true);
  const answer = gsm8kAnswer(raw);
  if (answer === null) throw new FieldError('answer', 'no-answer', '"answer" has no "#### <gold>" part');
  if (answer.length > opts.maxAnswerChars) throw new FieldError('answer', 'too-long', 'gold answer too long');
  const solution = raw.slice(0, raw.lastIndexOf('####')).trim();
  return withCommon({ question, answer }, o, line, opts, { solution: solution || undefined });
}

// ---- math -----------------------------------------------------------------------------------------------

function parseMath(o: Obj, line: number, opts: ParseOptions): DatasetRecord {
  const question = requiredText(o, 'problem', opts.maxQuestionChars);
  let answer: string | undefined;
  let solution: string | undefined;
  if ('answer' in o && o.answer !== null && o.answer !== undefined) {
    answer = requiredText(o, 'answer', opts.maxAnswerChars, true);
    solution = optionalText(o, 'solution');
  } else {
    solution = requiredText(o, 'solution', opts.maxQuestionChars * 4);
    const boxed = lastBoxed(solution);
    if (boxed === null || boxed.trim() === '') {
      throw new FieldError('solution', 'no-answer', '"solution" has no complete \\boxed{...} answer');
    }
    answer = boxed.trim();
    if (answer.length > opts.maxAnswerChars)
      throw new FieldError('solution', 'too-long', 'boxed answer too long');
  }
  return withCommon({ question, answer }, o, line, opts, {
    solution,
    dataset: optionalText(o, 'type') ?? optionalText(o, 'dataset'),
  });
}

// ---- plain jsonl ----------------------------------------------------------------------------------------

function parseJsonl(o: Obj, line: number, opts: ParseOptions): DatasetRecord {
  const k = opts.keys;
  const question = requiredText(o, k.question, opts.maxQuestionChars);
  const answer = requiredText(o, k.answer, opts.maxAnswerChars, true);
  const image = k.image ? optionalText(o, k.image) : undefined;
  return withCommon(
    { question, answer },
    o,
    line,
    opts,
    {
      dataset: k.dataset ? optionalText(o, k.dataset) : undefined,
      solution: k.solution ? optionalText(o, k.solution) : undefined,
      images: imageCheck(image ? [image] : [], k.image ?? 'image', opts),
    },
    k.id ?? 'id',
  );
}

const PARSERS: Readonly<Record<DatasetFormat, (o: Obj, line: number, opts: ParseOptions) => DatasetRecord>> =
  {
    spark: parseSpark,
    eval: parseEval,
    gsm8k: parseGsm8k,
    math: parseMath,
    jsonl: parseJsonl,
  };

/** Parses one JSON value of a format into a record or a RecordError. Never throws on bad input. */
export function parseRecord(value: unknown, line: number, format: DatasetFormat, opts: ParseOptions): Parsed {
  if (!isObj(value)) {
    return { line, field: null, code: 'malformed-json', message: 'line is not a JSON object' };
  }
  try {
    return PARSERS[format](value, line, opts);
  } catch (e) {
    if (e instanceof FieldError) return { line, field: e.field, code: e.code, message: e.message };
    return { line, field: null, code: 'invalid-field', message: e instanceof Error ? e.message : String(e) };
  }
}

/** Guesses the format from the keys of a first object (used by `format: 'auto'`). */
export function detectFormat(value: unknown, keys: JsonlKeys = DEFAULT_JSONL_KEYS): DatasetFormat | null {
  if (!isObj(value)) return null;
  if ('message' in value) return 'spark';
  if ('problem' in value && 'solution' in value) return 'math';
  if ('problem' in value && 'answer' in value) return 'eval';
  if ('question' in value && typeof value.answer === 'string' && value.answer.includes('####'))
    return 'gsm8k';
  if (keys.question in value && keys.answer in value) return 'jsonl';
  return null;
}

/** True for a RecordError (as opposed to a record). */
export function isRecordError(p: Parsed): p is RecordError {
  return 'code' in p && 'message' in p && !('question' in p);
}

/** One line of the SPARK training format for a record (text-only chat list, JSON-encoded). */
export function toSparkLine(r: Pick<DatasetRecord, 'question' | 'answer'>): string {
  const message = JSON.stringify([{ role: 'user', content: [{ type: 'text', text: r.question }] }]);
  return JSON.stringify({ message, answer: r.answer });
}

/** One line of the evaluation format for a record. */
export function toEvalLine(r: Pick<DatasetRecord, 'question' | 'answer' | 'dataset'>): string {
  return JSON.stringify({
    dataset: r.dataset ?? 'default',
    problem: r.question,
    answer: r.answer,
    image_path: '',
  });
}
