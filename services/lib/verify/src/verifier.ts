// The verifier: response + label → { reward, extracted, reason }. Owns the input caps, the time budget and
// the split between the in-thread fast rules (extraction, string and numeric equality) and the stoppable
// symbolic step (pool.ts). Never throws: every failure becomes reward 0 with a reason.

import { compareAnswers } from './compare.js';
import { threadCpuMs } from './cpuclock.js';
import { DEFAULT_MAX_ANSWER_CHARS, extractAnswer, type BoxChoice, type ExtractRule } from './extract.js';
import { DEFAULT_REL_TOL } from './numeric.js';
import { SymbolicPool, type PoolOptions, type PoolTiming } from './pool.js';

/** The result of one verification. `reason` is `<extraction>:<rule>` or `<extraction>:<failure>`. */
export interface VerifyResult {
  readonly reward: 0 | 1;
  readonly extracted: string | null;
  readonly reason: string;
  /**
   * Absent when the rules decided (reward 1 right, 0 wrong). `timeout`: the symbolic check was cut off at
   * the time budget (or found no worker within the wait bound), so reward 0 says nothing about the answer
   * and callers should not treat it as "wrong". `error`: bad input, a skipped or failed symbolic step.
   */
  readonly status?: VerifyStatus;
  /**
   * Only with `timing: true` in the item options. CPU time the symbolic step used in its worker thread
   * (ms; wall time where /proc is unavailable): the part of the call charged to the budget besides the
   * in-thread rules; 0 when the rules decided alone. At most the budget plus the termination latency.
   */
  readonly symbolicMs?: number;
  /**
   * Only with `timing: true`. Time spent waiting for a worker (ms) — behind other callers' jobs, or for a
   * worker to start after terminations used up the warm spares. Not charged to the budget; bounded by
   * `maxQueueWaitMs`.
   */
  readonly waitMs?: number;
}

export type VerifyStatus = 'timeout' | 'error';

/**
 * Per-item options (a dataset's settings). `mode: 'judge'` compares judge verdicts ("Yes"/"No"/"A"/"B"):
 * first box, trimmed, case-sensitive string equality and nothing else, as the reference does.
 */
export interface ItemOptions {
  readonly mode?: 'math' | 'judge';
  /** Default 'last' in math mode, 'first' in judge mode. */
  readonly box?: BoxChoice;
  /** GSM8K `#### 42` fallback when the response has no box (default false). */
  readonly gsm8k?: boolean;
  /** "The answer is 42" fallback when the response has no box (default false). */
  readonly answerIs?: boolean;
  /**
   * An answer stated without a box when the response has none (default false, as in the reference's
   * training): "the final answer is 7.78", else the last `$…$`, else the last number.
   */
  readonly unboxed?: boolean;
  /** This call's time budget in ms (default: the verifier's `budgetMs`). */
  readonly budgetMs?: number;
  /** Add `symbolicMs` and `waitMs` to the result (default false, so results keep their shape). */
  readonly timing?: boolean;
}

export interface VerifierOptions extends PoolOptions {
  /** Time budget per call in ms, enforced by terminating the symbolic worker (default 50). */
  readonly budgetMs?: number;
  /** Relative numeric tolerance (default 1e-6). */
  readonly relTol?: number;
  /** Longest response read; longer ones get reward 0, reason `response-too-long` (default 1 MiB). */
  readonly maxResponseChars?: number;
  /** Longest extracted answer (default 2,000 chars). */
  readonly maxAnswerChars?: number;
  /** Longest label (default 2,000 chars). */
  readonly maxLabelChars?: number;
  /** Longest answer or label handed to the symbolic step (default 500 chars). */
  readonly maxSymbolicChars?: number;
  /** Deepest brace/parenthesis nesting handed to the symbolic step (default 32). */
  readonly maxSymbolicDepth?: number;
}

export const DEFAULT_BUDGET_MS = 50;
export const DEFAULT_MAX_RESPONSE_CHARS = 1 << 20;
export const DEFAULT_MAX_LABEL_CHARS = 2_000;
export const DEFAULT_MAX_SYMBOLIC_CHARS = 500;
export const DEFAULT_MAX_SYMBOLIC_DEPTH = 32;

/** Max nesting of (), [], {} in `s`. */
function nestingDepth(s: string): number {
  let d = 0;
  let max = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 40 || c === 91 || c === 123) max = Math.max(max, ++d);
    else if (c === 41 || c === 93 || c === 125) d--;
  }
  return max;
}

/** Reasons that are not a verdict on the answer. */
const ERROR_REASON =
  /^(?:[a-z-]+:)?(?:invalid-input|internal-error|symbolic-error|symbolic-skipped|label-too-long)/;

function result(reward: 0 | 1, extracted: string | null, reason: string): VerifyResult {
  if (reason.includes('symbolic-timeout')) return { reward, extracted, reason, status: 'timeout' };
  if (ERROR_REASON.test(reason)) return { reward, extracted, reason, status: 'error' };
  return { reward, extracted, reason };
}

/**
 * Inputs (response plus label) up to this many characters have their in-thread rules charged in wall
 * time, at most `SMALL_CHARGE_CAP_MS`: those rules take at most about 150 µs of CPU there (the slowest
 * shapes measured at 64 KiB — 8,000 boxes, 64 K braces — took 0.5–0.6 ms), and reading the thread's CPU
 * clock (a `pread` of /proc, 2–9 µs, more while the machine is busy) would double the cost of a numeric
 * verdict. Larger inputs are charged the caller thread's CPU time.
 */
const SMALL_INPUT_CHARS = 16_384;
const SMALL_CHARGE_CAP_MS = 1;

/**
 * When a call began, on the clock its in-thread rules are charged on: the caller thread's CPU time (ms)
 * for a large input where /proc allows, so that the verdict does not depend on how long the thread
 * waited to be scheduled; else wall time, capped for a small input.
 */
interface ChargeStart {
  readonly wall: number;
  readonly cpu: number | null;
  readonly capped: boolean;
}

function chargeStart(inputChars: number): ChargeStart {
  const capped = inputChars <= SMALL_INPUT_CHARS;
  return { wall: performance.now(), cpu: capped ? null : threadCpuMs(), capped };
}

/** The in-thread time charged since `start` (ms). */
function chargedSince(start: ChargeStart): number {
  if (start.cpu !== null) {
    const now = threadCpuMs();
    if (now !== null) return now - start.cpu;
  }
  const wall = performance.now() - start.wall;
  return start.capped ? Math.min(wall, SMALL_CHARGE_CAP_MS) : wall;
}

const lengthOf = (v: unknown): number => (typeof v === 'string' ? v.length : 0);

/** Adds the time split to a result when the caller asked for it (`timing: true`). */
function timed(item: ItemOptions, r: VerifyResult, t?: PoolTiming): VerifyResult {
  if (item.timing !== true) return r;
  // Built field by field, not spread: this is on the per-call path of every timed verification.
  const symbolicMs = t?.runMs ?? 0;
  const waitMs = t?.waitMs ?? 0;
  const { reward, extracted, reason, status } = r;
  return status === undefined
    ? { reward, extracted, reason, symbolicMs, waitMs }
    : { reward, extracted, reason, status, symbolicMs, waitMs };
}

export class Verifier {
  readonly budgetMs: number;
  private readonly relTol: number;
  private readonly maxResponseChars: number;
  private readonly maxAnswerChars: number;
  private readonly maxLabelChars: number;
  private readonly maxSymbolicChars: number;
  private readonly maxSymbolicDepth: number;
  private readonly pool: SymbolicPool;

  constructor(opts: VerifierOptions = {}) {
    this.budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
    this.relTol = opts.relTol ?? DEFAULT_REL_TOL;
    this.maxResponseChars = opts.maxResponseChars ?? DEFAULT_MAX_RESPONSE_CHARS;
    this.maxAnswerChars = opts.maxAnswerChars ?? DEFAULT_MAX_ANSWER_CHARS;
    this.maxLabelChars = opts.maxLabelChars ?? DEFAULT_MAX_LABEL_CHARS;
    this.maxSymbolicChars = opts.maxSymbolicChars ?? DEFAULT_MAX_SYMBOLIC_CHARS;
    this.maxSymbolicDepth = opts.maxSymbolicDepth ?? DEFAULT_MAX_SYMBOLIC_DEPTH;
    this.pool = new SymbolicPool(opts);
  }

  /** Resolves once the symbolic workers are warm; call before timing-sensitive work. */
  ready(): Promise<void> {
    return this.pool.ready();
  }

  /** Workers terminated so far because a symbolic step overran its budget. */
  get terminations(): number {
    return this.pool.terminations;
  }

  /** Stops the worker threads; later calls still answer, with reward 0 for anything needing symbolic. */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** Extracts the answer from a model response and compares it with the label. Never rejects. */
  async verify(response: unknown, label: unknown, item: ItemOptions = {}): Promise<VerifyResult> {
    const started = chargeStart(lengthOf(response) + lengthOf(label));
    try {
      if (typeof response !== 'string') {
        return timed(item, result(0, null, 'invalid-input: response is not a string'));
      }
      if (response.length > this.maxResponseChars) return timed(item, result(0, null, 'response-too-long'));
      const judge = item.mode === 'judge';
      const ex = extractAnswer(response, {
        box: item.box ?? (judge ? 'first' : 'last'),
        gsm8k: item.gsm8k ?? false,
        answerIs: item.answerIs ?? false,
        unboxed: item.unboxed ?? false,
        joinBoxes: !judge,
        maxAnswerChars: this.maxAnswerChars,
      });
      if (ex.answer === null) return timed(item, result(0, null, ex.rule));
      return await this.compare(ex.answer, label, ex.rule, judge, started, item);
    } catch (err) {
      return timed(
        item,
        result(0, null, `internal-error: ${err instanceof Error ? err.message : String(err)}`),
      );
    }
  }

  /** Compares an already-extracted answer with the label (the `{answer, label}` form). Never rejects. */
  async verifyAnswer(answer: unknown, label: unknown, item: ItemOptions = {}): Promise<VerifyResult> {
    const started = chargeStart(lengthOf(answer) + lengthOf(label));
    try {
      if (typeof answer !== 'string')
        return timed(item, result(0, null, 'invalid-input: answer is not a string'));
      if (answer.length > this.maxAnswerChars) return timed(item, result(0, null, 'answer-too-long'));
      return await this.compare(answer.trim(), label, 'given', item.mode === 'judge', started, item);
    } catch (err) {
      return timed(
        item,
        result(0, null, `internal-error: ${err instanceof Error ? err.message : String(err)}`),
      );
    }
  }

  private async compare(
    answer: string,
    label: unknown,
    how: ExtractRule | 'given',
    judge: boolean,
    started: ChargeStart,
    item: ItemOptions,
  ): Promise<VerifyResult> {
    const budgetMs = item.budgetMs ?? this.budgetMs;
    const done = (r: VerifyResult, t?: PoolTiming): VerifyResult => timed(item, r, t);
    if (typeof label !== 'string')
      return done(result(0, answer, `${how}:invalid-input: label is not a string`));
    if (label.length > this.maxLabelChars) return done(result(0, answer, `${how}:label-too-long`));
    if (judge) {
      const ok = answer.trim() === label.trim();
      return done(result(ok ? 1 : 0, answer, `${how}:${ok ? 'judge-label' : 'judge-mismatch'}`));
    }
    const fast = compareAnswers(answer, label, { relTol: this.relTol });
    if (!fast.pending) return done(result(fast.equal ? 1 : 0, answer, `${how}:${fast.rule}`));
    if (answer.length > this.maxSymbolicChars || label.length > this.maxSymbolicChars) {
      return done(result(0, answer, `${how}:symbolic-skipped: longer than ${this.maxSymbolicChars} chars`));
    }
    if (nestingDepth(answer) > this.maxSymbolicDepth || nestingDepth(label) > this.maxSymbolicDepth) {
      return done(result(0, answer, `${how}:symbolic-skipped: nested deeper than ${this.maxSymbolicDepth}`));
    }
    // The fast rules' time (no await before this point: this thread's CPU time since the call began, or
    // for a small input its wall time capped at 1 ms) counts against the budget; the rest is the symbolic
    // step's CPU time in its worker. Waiting for a worker, or for a CPU, is not charged (out.timing.waitMs).
    const left = budgetMs - chargedSince(started);
    if (left <= 0) {
      return done(result(0, answer, `${how}:symbolic-timeout (before start, budget ${budgetMs} ms)`));
    }
    const out = await this.pool.run(answer, label, this.relTol, left);
    switch (out.kind) {
      case 'done':
        return done(result(out.equal ? 1 : 0, answer, `${how}:${out.rule}`), out.timing);
      case 'timeout':
        return done(
          result(0, answer, `${how}:symbolic-timeout (${out.stage}, budget ${budgetMs} ms)`),
          out.timing,
        );
      case 'error':
        return done(result(0, answer, `${how}:symbolic-error: ${out.message}`), out.timing);
    }
  }
}
