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
  | 'matrix'
  | 'relation'
  | 'relation-mismatch'
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
export type SymbolicCheck = (a: string, b: string, mode?: SymbolicMode) => boolean | null;

/**
 * What the symbolic rule checks: `equal` (a ≡ b), `positive-multiple` (a ≡ c·b for a constant c > 0: the same
 * inequality `b > 0`), or `nonzero-multiple` (c ≠ 0: the same `≠ 0` relation).
 */
export type SymbolicMode = 'equal' | 'positive-multiple' | 'nonzero-multiple';

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
  | { kind: 'matrix'; rows: number; cols: number; items: string[] }
  | { kind: 'scalar' };

/** Most rows or columns of a matrix read as one (larger ones are compared as strings only). */
const MAX_MATRIX_DIM = 16;

/**
 * A matrix or vector: `pmatrix`, `bmatrix`, `vmatrix`, `matrix`, or `array` (optionally inside `[ ]` or
 * `( )`, which `\left[ … \right]` becomes). Rows split at `\\`, entries at `&`; null when not a matrix
 * or when the rows have different lengths.
 */
function matrixOf(s: string): { rows: number; cols: number; items: string[] } | null {
  const m =
    /^[[(]?\s*\\begin\{([pbBvV]?matrix)\}([\s\S]*)\\end\{\1\}\s*[\])]?$/.exec(s) ??
    /^[[(]?\s*\\begin\{(array)\}\s*\{[^{}]*\}([\s\S]*)\\end\{array\}\s*[\])]?$/.exec(s);
  if (!m || m[2] === undefined) return null;
  const rows = m[2]
    .split('\\\\')
    .map((r) => r.trim())
    .filter((r, i, all) => r !== '' || i < all.length - 1);
  if (rows.length === 0 || rows.length > MAX_MATRIX_DIM) return null;
  const cells = rows.map((r) => r.split('&').map((c) => c.trim()));
  const cols = cells[0]?.length ?? 0;
  if (cols === 0 || cols > MAX_MATRIX_DIM || cells.some((r) => r.length !== cols || r.includes('')))
    return null;
  return { rows: rows.length, cols, items: cells.flat() };
}

/** Reads the top-level shape of a normalised answer. */
function structureOf(s: string): Structure {
  const matrix = s.includes('\\begin{') ? matrixOf(s) : null;
  if (matrix) return { kind: 'matrix', ...matrix };
  const union = splitTopLevel(s, '\\cup');
  if (union.length > 1) return { kind: 'union', items: union };
  if (s.startsWith('\\{') && s.endsWith('\\}')) {
    const inner = s.slice(2, -2);
    if (!inner.includes('\\{')) return { kind: 'set', items: splitTopLevel(inner) };
  }
  // A set in bare braces, `{1, 2, 3}` (a LaTeX group would hold no top-level comma).
  if (s.startsWith('{') && s.endsWith('}') && enclosesWhole(s)) {
    const items = splitTopLevel(s.slice(1, -1));
    if (items.length >= 2) return { kind: 'set', items };
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

/** Whether the first bracket of `s` closes at its last character. */
function enclosesWhole(s: string): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    if (depth === 0 && i < s.length - 1) return false;
  }
  return depth === 0;
}

/** Three or more consecutive letters outside LaTeX commands (`\\sin`, `\\pi` do not count). */
function hasWord(norm: string): boolean {
  return /[A-Za-z]{3,}/.test(norm.replace(/\\[A-Za-z]+/g, ' '));
}

function hasPercent(raw: string): boolean {
  return (
    raw.includes('%') || /\d\s*(?:\\(?:text|textnormal|mbox)\{\s*)?(?:percent|per cent|pct)\b/i.test(raw)
  );
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
  const sym = opts.symbolic(sa, sb, 'equal');
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

/** Relation operators after normalisation (`fixRelations` spells each one way). */
type RelOp = '<' | '>' | '\\le' | '\\ge' | '\\ne';
const REL_OPS: readonly RelOp[] = ['\\le', '\\ge', '\\ne', '<', '>'];
/** The same relation read right to left. */
const FLIP: Record<RelOp, RelOp> = { '<': '>', '>': '<', '\\le': '\\ge', '\\ge': '\\le', '\\ne': '\\ne' };

interface Relation {
  /** Sides, left to right (2, or 3 for `a < x < b`), after reading `>`/`\ge` as `<`/`\le` right to left. */
  readonly parts: string[];
  readonly ops: ('<' | '\\le' | '\\ne')[];
}

/** Reads `L op R` or `a op x op b` at the top level (outside brackets); null when `s` is not one. */
function relationOf(s: string): Relation | null {
  const parts: string[] = [];
  const ops: RelOp[] = [];
  let depth = 0;
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0) {
      const op =
        c === '<' || c === '>'
          ? c
          : REL_OPS.find(
              (o) => o.startsWith('\\') && s.startsWith(o, i) && !/[a-zA-Z]/.test(s[i + o.length] ?? ''),
            );
      if (op !== undefined) {
        parts.push(s.slice(last, i).trim());
        ops.push(op);
        last = i + op.length;
        i = last - 1;
      }
    }
    if (ops.length > 2) return null;
  }
  parts.push(s.slice(last).trim());
  if (ops.length === 0 || parts.some((p) => p === '' || p.includes('='))) return null;
  const up = ops.every((o) => o === '<' || o === '\\le');
  const down = ops.every((o) => o === '>' || o === '\\ge');
  if (ops.length === 2 && !up && !down) return null;
  if (ops.length === 1 && ops[0] === '\\ne') return { parts, ops: ['\\ne'] };
  if (down) {
    return { parts: parts.reverse(), ops: ops.reverse().map((o) => FLIP[o] as '<' | '\\le') };
  }
  return { parts, ops: ops as ('<' | '\\le')[] };
}

/** A lone variable (`x`, `x_1`, `\theta`). */
function isVariable(s: string): boolean {
  return /^(?:[a-zA-Z]|\\(?:alpha|beta|gamma|theta|lambda|mu|phi|varphi|omega|sigma|tau|rho))(?:_\{?[a-zA-Z0-9]{1,3}\}?)?$/.test(
    s.replace(/\s+/g, ''),
  );
}

/** A side with no variable (numbers, `\pi`, `\sqrt{2}`, `\infty`). */
function isConstant(s: string): boolean {
  return !/[a-zA-Z]/.test(s.replace(/\\(?:pi|infty|sqrt|frac|dfrac|cdot|times)/g, ''));
}

/**
 * The interval a relation with a clear variable defines: `x \le 5` → `(-\infty, 5]`, `1 < x \le 3` →
 * `(1, 3]`, `x \ne 3` → `(-\infty, 3) \cup (3, \infty)`. Null when the variable is not clear.
 */
function intervalOf(r: Relation): string | null {
  const [p0 = '', p1 = '', p2] = r.parts;
  const closeOf = (op: string): string => (op === '\\le' ? ']' : ')');
  const openOf = (op: string): string => (op === '\\le' ? '[' : '(');
  if (r.parts.length === 3 && p2 !== undefined) {
    if (!isVariable(p1) || !isConstant(p0) || !isConstant(p2)) return null;
    return `${openOf(r.ops[0] ?? '<')}${p0}, ${p2}${closeOf(r.ops[1] ?? '<')}`;
  }
  const op = r.ops[0] ?? '<';
  if (isVariable(p0) && isConstant(p1)) {
    return op === '\\ne' ? `(-\\infty, ${p1}) \\cup (${p1}, \\infty)` : `(-\\infty, ${p1}${closeOf(op)}`;
  }
  if (isVariable(p1) && isConstant(p0)) {
    return op === '\\ne' ? `(-\\infty, ${p0}) \\cup (${p0}, \\infty)` : `${openOf(op)}${p0}, \\infty)`;
  }
  return null;
}

/**
 * Inequalities (rule `relation`): the same relation in any notation (`\ge`, `\geq`, `>=`), flipped
 * (`5 \ge x` = `x \le 5`), or scaled (`-x > -1` = `x < 1`, `2x > 4` = `x > 2`: R − L agree up to a positive
 * factor); and an inequality against the interval it defines when its variable is clear. Null when
 * neither side is an inequality. Works on the space-preserving normalisations.
 */
function compareRelations(a: string, b: string, opts: CompareOptions): CompareVerdict | null {
  const ra = relationOf(a);
  const rb = relationOf(b);
  if (ra === null && rb === null) return null;
  if (ra === null || rb === null) {
    // An interval against the inequality that defines it.
    const rel = (ra ?? rb) as Relation;
    const other = ra === null ? a : b;
    const iv = intervalOf(rel);
    if (iv === null || !/^[[(]/.test(other.trim())) return { equal: false, rule: 'relation-mismatch' };
    const v = ra === null ? compareAnswers(other, iv, opts) : compareAnswers(iv, other, opts);
    return v.equal
      ? { equal: true, rule: 'relation' }
      : v.pending
        ? v
        : { equal: false, rule: 'relation-mismatch' };
  }
  if (ra.parts.length !== rb.parts.length || ra.ops.join() !== rb.ops.join()) {
    return { equal: false, rule: 'relation-mismatch' };
  }
  // Side by side (or, for ≠, crosswise).
  const sides = (x: string[], y: string[]): CompareVerdict => {
    let pending = false;
    for (let i = 0; i < x.length; i++) {
      const v = compareAnswers(x[i] ?? '', y[i] ?? '', opts);
      if (v.pending) pending = true;
      else if (!v.equal) return { equal: false, rule: 'relation-mismatch' };
    }
    return pending ? { equal: false, rule: 'no-match', pending: true } : { equal: true, rule: 'relation' };
  };
  const direct = sides(ra.parts, rb.parts);
  if (direct.equal) return direct;
  if (ra.parts.length === 3) return direct;
  const ne = ra.ops[0] === '\\ne';
  if (ne) {
    const cross = sides(ra.parts, [...rb.parts].reverse());
    if (cross.equal) return cross;
  }
  // R − L up to a constant factor: positive for < and ≤, any non-zero for ≠.
  if (opts.symbolic === undefined) return { equal: false, rule: 'no-match', pending: true };
  const diff = (r: Relation): string => `(${r.parts[1] ?? ''})-(${r.parts[0] ?? ''})`;
  const sym = opts.symbolic(diff(ra), diff(rb), ne ? 'nonzero-multiple' : 'positive-multiple');
  return sym === true ? { equal: true, rule: 'relation' } : { equal: false, rule: 'relation-mismatch' };
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
  // Two equations are compared whole (`2x-y+1=0` and `x+y-1=0` must not both become `0`).
  const keepEquation = a.includes('=') && b.includes('=');
  const an = normalizeAnswer(a, { keepEquation });
  const bn = normalizeAnswer(b, { keepEquation });
  if (an === bn) return { equal: true, rule: 'normalized-string' };
  const rel = !/[<>]|\\[lgn]e/.test(an + bn)
    ? null
    : compareRelations(
        normalizeAnswer(a, { keepSpaces: true }),
        normalizeAnswer(b, { keepSpaces: true }),
        opts,
      );
  if (rel !== null) return rel;
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
    if (sa.kind === 'matrix' && sb.kind === 'matrix') {
      if (sa.rows !== sb.rows || sa.cols !== sb.cols) return { equal: false, rule: 'structure-mismatch' };
      const v = orderedEqual(ia, ib, opts);
      return v.equal ? { equal: true, rule: 'matrix' } : v;
    }
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
