// Answer extraction: finds the final answer in a model response. Owns the `\boxed{…}` / `\fbox{…}` brace
// matcher (first or last box), and the opt-in GSM8K (`#### 42`) and "The answer is 42" fallbacks.
//
// Every scan is linear in the response length and uses indexOf/lastIndexOf, never a backtracking regex
// over the whole response, so megabyte responses cost milliseconds.

/** Which box a caller wants: the reference takes the LAST box for the reward and the FIRST for judging. */
export type BoxChoice = 'first' | 'last';

export interface ExtractOptions {
  /** Which `\boxed{}` to take when there are several (default 'last'). */
  readonly box?: BoxChoice;
  /** Accept a GSM8K-style `#### 42` line when no box is present (per-dataset; default false). */
  readonly gsm8k?: boolean;
  /** Accept "The answer is 42" / "The final answer is 42" when no box is present (default false). */
  readonly answerIs?: boolean;
  /** Longest extracted answer kept; a longer one is refused (default 2,000 chars). */
  readonly maxAnswerChars?: number;
}

/** Why extraction produced what it did; becomes the `reason` prefix of a verification result. */
export type ExtractRule =
  'boxed' | 'gsm8k' | 'answer-is' | 'no-answer' | 'unterminated-box' | 'empty-box' | 'answer-too-long';

export interface Extraction {
  /** The extracted answer (trimmed), or null when nothing usable was found. */
  readonly answer: string | null;
  readonly rule: ExtractRule;
}

export const DEFAULT_MAX_ANSWER_CHARS = 2_000;
/** How many directly nested boxes (`\boxed{\boxed{5}}`) are unwrapped. */
const MAX_BOX_UNWRAP = 8;

const BOX_COMMANDS = ['\\boxed', '\\fbox'] as const;

/** A command occurrence: `\boxed` followed by a non-letter (so `\boxedx` is not a box). */
function isCommandAt(text: string, at: number, cmd: string): boolean {
  if (!text.startsWith(cmd, at)) return false;
  const next = text.charCodeAt(at + cmd.length);
  const isLetter = (next >= 65 && next <= 90) || (next >= 97 && next <= 122);
  return !isLetter;
}

/** Index of the first (or last) box command in `text`, or -1. */
function findBox(text: string, choice: BoxChoice): { at: number; cmd: string } | null {
  let best: { at: number; cmd: string } | null = null;
  for (const cmd of BOX_COMMANDS) {
    if (choice === 'first') {
      let from = 0;
      for (;;) {
        const at = text.indexOf(cmd, from);
        if (at < 0) break;
        if (isCommandAt(text, at, cmd)) {
          if (best === null || at < best.at) best = { at, cmd };
          break;
        }
        from = at + 1;
      }
    } else {
      let from = text.length;
      for (;;) {
        const at = text.lastIndexOf(cmd, from);
        if (at < 0) break;
        if (isCommandAt(text, at, cmd)) {
          if (best === null || at > best.at) best = { at, cmd };
          break;
        }
        if (at === 0) break;
        from = at - 1;
      }
    }
  }
  return best;
}

/**
 * Reads the argument of a box command that starts at `at`: `{…}` with brace matching (escaped `\{` `\}`
 * do not count), or the space form `\boxed 42` (up to whitespace or `$`). Returns null when the brace
 * group never closes.
 */
function readBoxArgument(
  text: string,
  at: number,
  cmd: string,
  maxChars = Infinity,
): { content: string; end: number } | 'too-long' | null {
  let i = at + cmd.length;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  if (text[i] !== '{') {
    // `\boxed 42` (the form the MATH reference also accepts): a single whitespace-delimited token.
    if (i === at + cmd.length) return null;
    let j = i;
    while (j < text.length && !/[\s$]/.test(text[j] ?? ' ')) {
      if (++j - i > maxChars) return 'too-long';
    }
    return { content: text.slice(i, j), end: j };
  }
  const start = i + 1;
  let depth = 0;
  // An answer longer than the cap is refused anyway, so the scan stops there (a megabyte of `{` is O(cap)).
  const stop = Math.min(text.length, start + maxChars + 1);
  for (; i < stop; i++) {
    const c = text.charCodeAt(i);
    if (c === 92 /* \ */) {
      i++; // skip the escaped character: `\{` and `\}` are literal braces
      continue;
    }
    if (c === 123 /* { */) depth++;
    else if (c === 125 /* } */) {
      depth--;
      if (depth === 0) return { content: text.slice(start, i), end: i + 1 };
    }
  }
  return stop < text.length ? 'too-long' : null;
}

/** If `s` is exactly one box (`\boxed{…}` with nothing around it), its content; else null. */
function unwrapWholeBox(s: string): string | null {
  const t = s.trim();
  for (const cmd of BOX_COMMANDS) {
    if (isCommandAt(t, 0, cmd)) {
      const arg = readBoxArgument(t, 0, cmd);
      if (arg === null || arg === 'too-long') return null;
      if (arg.end === t.length) return arg.content;
    }
  }
  return null;
}

/** The content of the first or last complete box, following the reference's rules. */
export function extractBoxed(
  text: string,
  choice: BoxChoice = 'last',
  maxChars = DEFAULT_MAX_ANSWER_CHARS,
): { answer: string | null; found: boolean; unterminated: boolean; tooLong?: boolean } {
  const hit = findBox(text, choice);
  if (hit === null) return { answer: null, found: false, unterminated: false };
  const arg = readBoxArgument(text, hit.at, hit.cmd, maxChars);
  if (arg === 'too-long') return { answer: null, found: true, unterminated: false, tooLong: true };
  if (arg === null) return { answer: null, found: true, unterminated: true };
  let inner = arg.content;
  for (let k = 0; k < MAX_BOX_UNWRAP; k++) {
    const next = unwrapWholeBox(inner);
    if (next === null) break;
    inner = next;
  }
  return { answer: inner.trim(), found: true, unterminated: false };
}

/** Text after the last `####` marker, up to the end of its line (GSM8K gold-answer convention). */
export function extractGsm8k(text: string): string | null {
  const at = text.lastIndexOf('####');
  if (at < 0) return null;
  let end = text.indexOf('\n', at);
  if (end < 0) end = text.length;
  const ans = text.slice(at + 4, end).trim();
  return ans === '' ? null : ans;
}

/** Phrase fallback: the text after the last "answer is" / "answer:" (case-insensitive), up to the line end or a sentence end. */
export function extractAnswerIs(text: string): string | null {
  // Only the tail of a long response can hold the final sentence; scanning a bounded tail keeps this cheap.
  const tail = text.length > 4_096 ? text.slice(-4_096) : text;
  const lower = tail.toLowerCase();
  let at = -1;
  let len = 0;
  for (const phrase of ['answer is', 'answer:']) {
    const i = lower.lastIndexOf(phrase);
    if (i > at) {
      at = i;
      len = phrase.length;
    }
  }
  if (at < 0) return null;
  let rest = tail.slice(at + len);
  const nl = rest.indexOf('\n');
  if (nl >= 0) rest = rest.slice(0, nl);
  rest = rest.trim().replace(/^:\s*/, '');
  // A sentence ends at ". " (a period followed by a space); a decimal point is followed by a digit.
  const stop = rest.search(/\.(\s|$)/);
  if (stop >= 0) rest = rest.slice(0, stop);
  rest = rest.trim();
  if (rest.startsWith('$') && rest.endsWith('$') && rest.length >= 2) rest = rest.slice(1, -1).trim();
  return rest === '' ? null : rest;
}

/** Extracts the final answer: box first; the opted-in fallbacks only when the response has no box at all. */
export function extractAnswer(response: string, opts: ExtractOptions = {}): Extraction {
  const maxChars = opts.maxAnswerChars ?? DEFAULT_MAX_ANSWER_CHARS;
  const boxed = extractBoxed(response, opts.box ?? 'last', maxChars);
  let answer: string | null = null;
  let rule: ExtractRule = 'no-answer';
  if (boxed.tooLong) return { answer: null, rule: 'answer-too-long' };
  if (boxed.found) {
    if (boxed.unterminated) return { answer: null, rule: 'unterminated-box' };
    answer = boxed.answer;
    rule = 'boxed';
    if (answer === '') return { answer: null, rule: 'empty-box' };
  } else {
    if (opts.gsm8k) {
      answer = extractGsm8k(response);
      if (answer !== null) rule = 'gsm8k';
    }
    if (answer === null && opts.answerIs) {
      answer = extractAnswerIs(response);
      if (answer !== null) rule = 'answer-is';
    }
  }
  if (answer === null) return { answer: null, rule: 'no-answer' };
  if (answer.length > maxChars) return { answer: null, rule: 'answer-too-long' };
  return { answer, rule };
}
