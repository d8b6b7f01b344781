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
  /**
   * An answer stated without a box, when the response has none (default false): "the final answer is
   * 7.78", else the last `$…$` / `\(…\)` / `\[…\]` math span, else the last number.
   */
  readonly unboxed?: boolean;
  /** Read boxes that together form the answer (`\boxed{1}, \boxed{2}`) as one list (default false). */
  readonly joinBoxes?: boolean;
  /** Longest extracted answer kept; a longer one is refused (default 2,000 chars). */
  readonly maxAnswerChars?: number;
}

/** Why extraction produced what it did; becomes the `reason` prefix of a verification result. */
export type ExtractRule =
  | 'boxed'
  | 'gsm8k'
  | 'answer-is'
  | 'unboxed'
  | 'no-answer'
  | 'unterminated-box'
  | 'empty-box'
  | 'answer-too-long';

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

/** Most boxes joined into one answer (`\boxed{1}, \boxed{2}, …`). */
const MAX_JOINED_BOXES = 16;
/** What may stand between boxes that together form the answer: commas, "and", math-mode `$`, spacing. */
const BOX_JOINER = /^(?:[\s$,;]|\\[,;:! ]|\\q?quad|\\text\{\s*(?:and|or|,)?\s*\}|\b(?:and|or)\b){0,12}$/;

/** Unwraps `\boxed{\boxed{7}}` to `7`. */
function unwrapBoxes(content: string): string {
  let inner = content;
  for (let k = 0; k < MAX_BOX_UNWRAP; k++) {
    const next = unwrapWholeBox(inner);
    if (next === null) break;
    inner = next;
  }
  return inner.trim();
}

/** The box command that ends before `before`, closest to it, with its argument; null if none. */
function previousBox(
  text: string,
  before: number,
  maxChars: number,
): { at: number; content: string; end: number } | null {
  const prefix = text.slice(Math.max(0, before - maxChars - 64), before);
  const offset = Math.max(0, before - maxChars - 64);
  const hit = findBox(prefix, 'last');
  if (hit === null) return null;
  const arg = readBoxArgument(text, offset + hit.at, hit.cmd, maxChars);
  if (arg === null || arg === 'too-long' || arg.end > before) return null;
  return { at: offset + hit.at, content: arg.content, end: arg.end };
}

/**
 * The content of the first or last complete box, following the reference's rules. With `joinBoxes`
 * (last box only), boxes directly before the last one that are separated from it only by commas, "and",
 * `$` or spacing form one answer with it: `\boxed{1}, \boxed{2}` reads as `1, 2`.
 */
export function extractBoxed(
  text: string,
  choice: BoxChoice = 'last',
  maxChars = DEFAULT_MAX_ANSWER_CHARS,
  joinBoxes = false,
): { answer: string | null; found: boolean; unterminated: boolean; tooLong?: boolean } {
  const hit = findBox(text, choice);
  if (hit === null) return { answer: null, found: false, unterminated: false };
  const arg = readBoxArgument(text, hit.at, hit.cmd, maxChars);
  if (arg === 'too-long') return { answer: null, found: true, unterminated: false, tooLong: true };
  if (arg === null) return { answer: null, found: true, unterminated: true };
  const parts = [unwrapBoxes(arg.content)];
  if (joinBoxes && choice === 'last') {
    let start = hit.at;
    let total = parts[0]?.length ?? 0;
    for (let k = 1; k < MAX_JOINED_BOXES; k++) {
      const prev = previousBox(text, start, maxChars);
      if (prev === null || !BOX_JOINER.test(text.slice(prev.end, start))) break;
      const content = unwrapBoxes(prev.content);
      total += content.length + 2;
      if (content === '' || total > maxChars) break;
      parts.unshift(content);
      start = prev.at;
    }
  }
  return { answer: parts.join(', '), found: true, unterminated: false };
}

/** The last `$…$`, `\(…\)` or `\[…\]` span of the text (its content), or null. */
export function extractLastMath(text: string): string | null {
  const tail = text.length > 4_096 ? text.slice(-4_096) : text;
  let best: { at: number; content: string } | null = null;
  for (const [open, close] of [
    ['\\(', '\\)'],
    ['\\[', '\\]'],
  ] as const) {
    const end = tail.lastIndexOf(close);
    const at = end < 0 ? -1 : tail.lastIndexOf(open, end);
    if (at >= 0 && (best === null || at > best.at)) best = { at, content: tail.slice(at + 2, end) };
  }
  // `$…$` pairs, read left to right so `\$` (an escaped dollar) and `$$` are handled.
  let open = -1;
  let lastPair: { at: number; content: string } | null = null;
  for (let i = 0; i < tail.length; i++) {
    if (tail[i] === '\\') {
      i++;
      continue;
    }
    if (tail[i] !== '$') continue;
    let j = i;
    while (tail[j + 1] === '$') j++;
    if (open < 0) open = j + 1;
    else {
      lastPair = { at: open, content: tail.slice(open, i) };
      open = -1;
    }
    i = j;
  }
  if (lastPair && (best === null || lastPair.at > best.at)) best = lastPair;
  const content = best?.content.trim() ?? '';
  return content === '' ? null : content;
}

/** The last number in the text (`7.78`, `-3`, `1,000`, `3/4`), or null. */
export function extractLastNumber(text: string): string | null {
  const tail = text.length > 4_096 ? text.slice(-4_096) : text;
  const all = tail.match(/-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\/\d+)?/g);
  return all?.[all.length - 1] ?? null;
}

/** "The final answer is 7.78" (the sentence's answer), else the last math span, else the last number. */
export function extractUnboxed(text: string): string | null {
  const phrase = extractAnswerIs(text);
  if (phrase !== null) return phrase;
  return extractLastMath(text) ?? extractLastNumber(text);
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
  const boxed = extractBoxed(response, opts.box ?? 'last', maxChars, opts.joinBoxes ?? false);
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
    if (answer === null && opts.unboxed) {
      answer = extractUnboxed(response);
      if (answer !== null) rule = 'unboxed';
    }
  }
  if (answer === null) return { answer: null, rule: 'no-answer' };
  if (answer.length > maxChars) return { answer: null, rule: 'answer-too-long' };
  return { answer, rule };
}
