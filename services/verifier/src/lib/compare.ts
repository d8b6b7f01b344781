// Answer equivalence: the ordered rules that decide whether an extracted answer equals a label. Pure and
// synchronous; the symbolic rule is a callback, so the same code runs in the caller's thread (fast paths,
// with no symbolic callback: an undecided pair comes back as `pending`) and in the stoppable worker
// (with the compute-engine callback).

import { normalizeAnswer } from './normalize.js';
import { DEFAULT_REL_TOL, numbersEqual, parseNumber, percentOf } from './numeric.js';

/** The rule that decided a comparison; the `reason` of a result names it. */
export type CompareRule =
  | 'exact'
  | 'normalized-string'
  | 'numeric-exact'
  | 'numeric-tolerance'
  | 'percent'
  | 'choice'
  | 'choice-mismatch'
  | 'interval'
  | 'tuple'
  | 'set'
  | 'list'
  | 'structure-mismatch'
  | 'symbolic'
  | 'symbolic-mismatch'
  | 'numeric-mismatch'
  | 'no-match';

export interface CompareVerdict {
  readonly equal: boolean;
  readonly rule: CompareRule;
  /** True when only the symbolic step could decide and none was available (fast path in the caller's thread). */
  readonly pending?: boolean;
}

/**
 * The symbolic rule: true (equivalent), false (not), or null (could not parse / undecidable). Receives
 * the space-preserving normalisations of both sides.
 */
export type SymbolicCheck = (a: string, b: string) => boolean | null;

export interface CompareOptions {
  readonly relTol?: number;
  readonly symbolic?: SymbolicCheck;
  /** Elements per list/tuple/set beyond which a structure is compared as a string only. */
  readonly maxElements?: number;
}

const DEFAULT_MAX_ELEMENTS = 64;

type ScalarVerdict = { equal: boolean; rule: CompareRule; pending?: boolean };

/** Splits `s` at top-level commas (outside (), [], {}). */
function splitTopLevel(s: string, sep = ','): string[] {
  const out: string[] = [];
  let depth = 0;
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && (s[i + 1] === '{' || s[i + 1] === '}')) {
      depth += s[i + 1] === '{' ? 1 : -1;
      i++;
    } else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && s.startsWith(sep, i)) {
      out.push(s.slice(last, i));
      last = i + sep.length;
      i += sep.length - 1;
    }
  }
  out.push(s.slice(last));
  return out;
}

type Structure =
  | { kind: 'seq'; open: string; close: string; items: string[] }
  | { kind: 'set'; items: string[] }
  | { kind: 'list'; items: string[] }
  | { kind: 'union'; items: string[] }
  | { kind: 'scalar' };

/** Reads the top-level shape of a normalised answer. */
function structureOf(s: string): Structure {
  const union = splitTopLevel(s, '\\cup');
  if (union.length > 1) return { kind: 'union', items: union };
  if (s.startsWith('\\{') && s.endsWith('\\}')) {
    const inner = s.slice(2, -2);
    if (!inner.includes('\\{')) return { kind: 'set', items: splitTopLevel(inner) };
  }
  const first = s[0];
  const last = s[s.length - 1];
  if ((first === '(' || first === '[') && (last === ')' || last === ']')) {
    const opener = first;
    const closer = last;
    // Check the outer brackets enclose the whole string (treating ( and [ alike for depth).
    let depth = 0;
    let whole = true;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth--;
      if (depth === 0 && i < s.length - 1) {
        whole = false;
        break;
      }
    }
    if (whole) {
      const items = splitTopLevel(s.slice(1, -1));
      if (items.length >= 2) return { kind: 'seq', open: opener, close: closer, items };
    }
  }
  const items = splitTopLevel(s);
  if (items.length >= 2) return { kind: 'list', items };
  return { kind: 'scalar' };
}

/** Three or more consecutive letters outside LaTeX commands (`\\sin`, `\\pi` do not count). */
function hasWord(norm: string): boolean {
  return /[A-Za-z]{3,}/.test(norm.replace(/\\[A-Za-z]+/g, ' '));
}

function hasPercent(raw: string): boolean {
  return raw.includes('%');
}

/** Equality of two scalars: normalised string, numeric (with percent readings), then symbolic. */
function scalarEqual(
  aNorm: string,
  bNorm: string,
  aRaw: string,
  bRaw: string,
  opts: CompareOptions,
): ScalarVerdict {
  if (aNorm === bNorm) return { equal: true, rule: 'normalized-string' };
  const relTol = opts.relTol ?? DEFAULT_REL_TOL;
  const an = parseNumber(aNorm);
  const bn = parseNumber(bNorm);
  if (an && bn) {
    const v = numbersEqual(an, bn, relTol);
    if (v !== 'different')
      return { equal: true, rule: v === 'exact' ? 'numeric-exact' : 'numeric-tolerance' };
    // A percentage also reads as its fraction: "50%" = 0.5 (and "50%" = 50, the MATH convention, above).
    const aPct = hasPercent(aRaw) && !hasPercent(bRaw);
    const bPct = hasPercent(bRaw) && !hasPercent(aRaw);
    if (aPct || bPct) {
      const scaled = percentOf(aPct ? an : bn);
      const v2 = aPct ? numbersEqual(scaled, bn, relTol) : numbersEqual(an, scaled, relTol);
      if (v2 !== 'different') return { equal: true, rule: 'percent' };
    }
    return { equal: false, rule: 'numeric-mismatch' };
  }
  // A word is not a product of variables: `listen` and `silent` would commute into equality.
  if (hasWord(aNorm) || hasWord(bNorm)) return { equal: false, rule: 'no-match' };
  if (opts.symbolic === undefined) return { equal: false, rule: 'no-match', pending: true };
  // Two equations are compared as equations (y=2x+1 vs 2x-y+1=0), so neither loses its left side.
  const keepEquation = aRaw.includes('=') && bRaw.includes('=');
  const sa = normalizeAnswer(aRaw, { keepSpaces: true, keepEquation });
  const sb = normalizeAnswer(bRaw, { keepSpaces: true, keepEquation });
  const sym = opts.symbolic(sa, sb);
  if (sym === true) return { equal: true, rule: 'symbolic' };
  if (sym === false) return { equal: false, rule: 'symbolic-mismatch' };
  return { equal: false, rule: 'no-match' };
}

/** A multiple-choice letter label: `C`, `(C)`, `C.`, `C)`. */
const CHOICE_LABEL = /^\(?([A-J])[).]?$/;
/** The answer's letter: the same forms, or a leading `(C)` / `C.` / `C)` before option text. */
function choiceLetter(norm: string): string | null {
  const m = /^\(?([A-J])[).:]?$/.exec(norm) ?? /^\(([A-J])\)/.exec(norm) ?? /^([A-J])[.)]/.exec(norm);
  return m?.[1] ?? null;
}

/** Elementwise ordered equality of two item lists. */
function orderedEqual(a: string[], b: string[], opts: CompareOptions): ScalarVerdict {
  if (a.length !== b.length) return { equal: false, rule: 'structure-mismatch' };
  let pending = false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    const v = scalarEqual(normalizeAnswer(x), normalizeAnswer(y), x, y, opts);
    if (v.pending) pending = true;
    else if (!v.equal) return { equal: false, rule: 'structure-mismatch' };
  }
  return pending ? { equal: false, rule: 'no-match', pending: true } : { equal: true, rule: 'tuple' };
}

/** Unordered multiset equality (greedy matching; each element matched once). */
function unorderedEqual(a: string[], b: string[], opts: CompareOptions): ScalarVerdict {
  if (a.length !== b.length) return { equal: false, rule: 'structure-mismatch' };
  const used = new Array<boolean>(b.length).fill(false);
  let pending = false;
  for (const x of a) {
    let found = false;
    for (let j = 0; j < b.length; j++) {
      if (used[j]) continue;
      const y = b[j] ?? '';
      const v = scalarEqual(normalizeAnswer(x), normalizeAnswer(y), x, y, opts);
      if (v.pending) pending = true;
      if (v.equal) {
        used[j] = true;
        found = true;
        break;
      }
    }
    if (!found && !pending) return { equal: false, rule: 'structure-mismatch' };
    if (!found) return { equal: false, rule: 'no-match', pending: true };
  }
  return { equal: true, rule: 'set' };
}

/**
 * Compares an extracted answer with a label, trying in order: exact string, MATH-normalised string,
 * multiple-choice letter (when the label is one), structures (intervals, tuples, sets, lists — elementwise
 * with the scalar rules), numeric (exact, then tolerance, then percent readings), symbolic.
 */
export function compareAnswers(answer: string, label: string, opts: CompareOptions = {}): CompareVerdict {
  const a = answer.trim();
  const b = label.trim();
  if (a === b) return { equal: true, rule: 'exact' };
  const an = normalizeAnswer(a);
  const bn = normalizeAnswer(b);
  if (an === bn) return { equal: true, rule: 'normalized-string' };
  const labelChoice = CHOICE_LABEL.exec(bn)?.[1];
  if (labelChoice !== undefined) {
    // A letter label is never a variable: only the letter forms are compared, never the symbolic rule.
    return choiceLetter(an) === labelChoice
      ? { equal: true, rule: 'choice' }
      : { equal: false, rule: 'choice-mismatch' };
  }
  const maxEl = opts.maxElements ?? DEFAULT_MAX_ELEMENTS;
  const sa = structureOf(an);
  const sb = structureOf(bn);
  if (sa.kind !== 'scalar' || sb.kind !== 'scalar') {
    // Raw items keep their spaces for the symbolic rule: split the space-preserving form the same way.
    const rawA = structureOf(normalizeAnswer(a, { keepSpaces: true }));
    const rawB = structureOf(normalizeAnswer(b, { keepSpaces: true }));
    const itemsOf = (s: Structure, n: Structure): string[] =>
      s.kind !== 'scalar' && n.kind === s.kind && n.items.length === s.items.length
        ? n.items.map((x) => x.trim())
        : s.kind !== 'scalar'
          ? s.items
          : [];
    if (sa.kind !== sb.kind) {
      // A bare list and a set of the same elements are the same answer ("1, 2" vs "\{1, 2\}").
      const setLike = (k: Structure['kind']): boolean => k === 'set' || k === 'list';
      if (!(setLike(sa.kind) && setLike(sb.kind))) return { equal: false, rule: 'structure-mismatch' };
    }
    if (sa.kind === 'scalar' || sb.kind === 'scalar') return { equal: false, rule: 'structure-mismatch' };
    const ia = itemsOf(sa, rawA);
    const ib = itemsOf(sb, rawB);
    if (ia.length > maxEl || ib.length > maxEl) return { equal: false, rule: 'structure-mismatch' };
    if (sa.kind === 'seq' && sb.kind === 'seq') {
      if (sa.open !== sb.open || sa.close !== sb.close) return { equal: false, rule: 'structure-mismatch' };
      const v = orderedEqual(ia, ib, opts);
      const isInterval = sa.open === '[' || sa.close === ']';
      return v.equal ? { equal: true, rule: isInterval ? 'interval' : 'tuple' } : v;
    }
    if (sa.kind === 'union' && sb.kind === 'union') {
      if (ia.length !== ib.length) return { equal: false, rule: 'structure-mismatch' };
      let pending = false;
      for (let i = 0; i < ia.length; i++) {
        const v = compareAnswers(ia[i] ?? '', ib[i] ?? '', opts);
        if (v.pending) pending = true;
        else if (!v.equal) return { equal: false, rule: 'structure-mismatch' };
      }
      return pending ? { equal: false, rule: 'no-match', pending: true } : { equal: true, rule: 'interval' };
    }
    const v = unorderedEqual(ia, ib, opts);
    return v.equal ? { equal: true, rule: sa.kind === 'set' || sb.kind === 'set' ? 'set' : 'list' } : v;
  }
  return scalarEqual(an, bn, a, b, opts);
}
