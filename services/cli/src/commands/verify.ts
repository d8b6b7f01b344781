// `spark verify [FILE]`: scores JSONL records with the verifier library. Reads `{"response", "label"}` or
// `{"answer", "label"}` lines from FILE or stdin and writes one `{"reward", "extracted", "reason"}` line per
// record, in input order, to stdout. A bad line gets `{"error": "line N: …"}` and the run goes on.
// Streaming with bounded memory: lines are split by hand with a length cap (a line with no newline cannot
// grow without bound), at most `WINDOW` records are in flight, and stdout back-pressure is respected.
// Exit codes: 0 every line parsed, 2 some lines were bad, 1 I/O error (e.g. FILE does not exist).
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';

import { CommanderError, Option, type Command } from 'commander';

import { InvalidArgumentError } from '@spark/runtime';
import { Verifier, type ItemOptions, type VerifyResult } from '@spark/verify';

/** Longest input line (characters); longer lines become error records. */
export const DEFAULT_MAX_LINE_CHARS = 4 * 1024 * 1024;
/**
 * Records in flight (results are still written in input order). Small enough that a window of symbolic
 * records, each using at most the 50 ms budget, stays within the pool's 1 s bound on queue waits.
 */
const WINDOW = 16;

interface VerifyCliOptions {
  budgetMs: string;
  box?: 'first' | 'last';
  judge?: boolean;
  gsm8k?: boolean;
  answerIs?: boolean;
  unboxed?: boolean;
  maxLineChars: string;
  workers: string;
  spares: string;
}

/** One input line's outcome: a verification, or an error message for that line. */
type LineOutcome = Promise<VerifyResult | { error: string }>;

/** Yields the lines of a stream (without terminators), or a marker for a line that exceeded `maxChars`. */
async function* lines(
  input: Readable,
  maxChars: number,
): AsyncGenerator<{ text: string } | { tooLong: number }> {
  input.setEncoding('utf8');
  let buf = '';
  let skipping = false; // inside an over-long line: drop text until its newline
  let skipped = 0;
  for await (const chunk of input as AsyncIterable<string>) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      const piece = nl < 0 ? chunk.slice(start) : chunk.slice(start, nl);
      if (skipping) skipped += piece.length;
      else if (buf.length + piece.length > maxChars) {
        skipping = true;
        skipped = buf.length + piece.length;
        buf = '';
      } else buf += piece;
      if (nl < 0) break;
      if (skipping) yield { tooLong: skipped };
      else yield { text: buf.endsWith('\r') ? buf.slice(0, -1) : buf };
      buf = '';
      skipping = false;
      start = nl + 1;
    }
  }
  if (skipping) yield { tooLong: skipped };
  else if (buf.length > 0) yield { text: buf };
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

/** Parses one record and starts its verification. */
function verifyLine(verifier: Verifier, text: string, lineNo: number, item: ItemOptions): LineOutcome {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return Promise.resolve({ error: `line ${lineNo}: invalid JSON: ${msg}` });
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
    return Promise.resolve({ error: `line ${lineNo}: expected a JSON object, got ${describe(rec)}` });
  }
  const r = rec as Record<string, unknown>;
  let label = r['label'];
  if (typeof label === 'number' && Number.isFinite(label)) label = String(label);
  if (typeof label !== 'string') {
    return Promise.resolve({ error: `line ${lineNo}: "label" must be a string, got ${describe(label)}` });
  }
  if (typeof r['response'] === 'string') return verifier.verify(r['response'], label, item);
  let answer = r['answer'];
  if (typeof answer === 'number' && Number.isFinite(answer)) answer = String(answer);
  if (typeof answer === 'string') return verifier.verifyAnswer(answer, label, item);
  return Promise.resolve({
    error: `line ${lineNo}: needs a "response" or an "answer" string (got response: ${describe(r['response'])}, answer: ${describe(answer)})`,
  });
}

/** Raised when stdout fails (e.g. EPIPE when the reader went away): an I/O error, exit 1. */
class OutputError extends Error {}

/** Writes to stdout, waiting for drain when the pipe is full; rejects with OutputError on failure. */
function write(out: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => reject(new OutputError(`verify: cannot write output: ${err.message}`));
    out.once('error', fail);
    const done = (): void => {
      out.removeListener('error', fail);
      resolve();
    };
    if (out.write(text)) done();
    else out.once('drain', done);
  });
}

/** Opens FILE (or stdin) and fails with a clear message when it cannot be read. */
async function openInput(file: string | undefined): Promise<Readable> {
  if (file === undefined || file === '-') return process.stdin;
  const stream = createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  }).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : String(err);
    throw new Error(`verify: cannot read ${file}: ${why}`);
  });
  return stream;
}

function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError(`verify: --${name} must be a positive integer`);
  return n;
}

export async function runVerify(file: string | undefined, opts: VerifyCliOptions): Promise<number> {
  const budgetMs = positiveInt('budget-ms', opts.budgetMs);
  const maxLine = positiveInt('max-line-chars', opts.maxLineChars);
  const workers = positiveInt('workers', opts.workers);
  const spares = Number(opts.spares);
  if (!Number.isInteger(spares) || spares < 0) {
    throw new InvalidArgumentError('verify: --spares must be a non-negative integer');
  }
  const input = await openInput(file);
  const item: ItemOptions = {
    mode: opts.judge ? 'judge' : 'math',
    ...(opts.box ? { box: opts.box } : {}),
    gsm8k: opts.gsm8k ?? false,
    answerIs: opts.answerIs ?? false,
    unboxed: opts.unboxed ?? false,
  };
  const verifier = new Verifier({ budgetMs, workers, spares });
  let bad = 0;
  let total = 0;
  try {
    await verifier.ready();
    const pending: LineOutcome[] = [];
    const flush = async (keep: number): Promise<void> => {
      while (pending.length > keep) {
        const out = await (pending.shift() as LineOutcome);
        if ('error' in out) bad++;
        await write(process.stdout, `${JSON.stringify(out)}\n`);
      }
    };
    let lineNo = 0;
    try {
      for await (const line of lines(input, maxLine)) {
        lineNo++;
        if ('tooLong' in line) {
          pending.push(Promise.resolve({ error: `line ${lineNo}: longer than ${maxLine} characters` }));
        } else if (line.text.trim() === '') {
          continue; // blank lines are not records
        } else {
          pending.push(verifyLine(verifier, line.text, lineNo, item));
        }
        total++;
        await flush(WINDOW);
      }
    } catch (err) {
      if (err instanceof OutputError) throw err;
      await flush(0);
      throw new Error(
        `verify: read error after line ${lineNo}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    await flush(0);
  } finally {
    await verifier.close();
    if (input !== process.stdin) input.destroy();
  }
  if (bad > 0)
    process.stderr.write(`spark verify: ${bad} of ${total} lines were bad (see the error records)\n`);
  return bad > 0 ? 2 : 0;
}

export function register(program: Command): void {
  program
    .command('verify')
    .description(
      'Score JSONL {"response"|"answer", "label"} records from FILE or stdin; writes {"reward", "extracted", "reason"} lines (exit 0 ok, 2 some bad lines, 1 I/O error)',
    )
    .argument('[file]', 'JSONL input file (default: stdin; "-" also means stdin)')
    .option('--budget-ms <ms>', 'time budget per record in milliseconds', '50')
    .addOption(
      new Option('--box <which>', 'which \\boxed{} to take (default: last; first with --judge)').choices([
        'first',
        'last',
      ]),
    )
    .option('--judge', 'labels are judge verdicts (Yes/No/A/B): first box, trimmed, case-sensitive')
    .option('--gsm8k', 'accept a GSM8K "#### 42" line when there is no box')
    .option('--answer-is', 'accept "The answer is 42" when there is no box')
    .option(
      '--unboxed',
      'accept an answer stated without a box when there is none: "the final answer is 7.78", else the last $…$, else the last number',
    )
    .option('--max-line-chars <n>', 'longest input line', String(DEFAULT_MAX_LINE_CHARS))
    .option('--workers <n>', 'symbolic worker threads', '1')
    .option('--spares <n>', 'pre-warmed spare threads that replace a worker stopped at the budget', '1')
    .action(async (file: string | undefined, opts: VerifyCliOptions) => {
      const code = await runVerify(file, opts);
      if (code !== 0) throw new CommanderError(code, 'spark.verify.badLines', `${code}`);
    });
}
