// The symbolic rule: equivalence of two LaTeX expressions through @cortex-js/compute-engine (see
// docs/verifier.md for why this library). Both sides are parsed; constants are compared by numeric
// evaluation, expressions with free variables by evaluating their difference at fixed pseudo-random points
// (a zero-test that catches every identity CE's simplifier misses, e.g. (x+1)^2 = x^2+2x+1, sin²+cos² = 1).
// Equations compare their (lhs − rhs) up to a non-zero constant factor. This module only runs inside the
// stoppable worker (symbolic-worker.ts): parsing can take unbounded time on hostile input.

import { ComputeEngine, isFunction } from '@cortex-js/compute-engine';

import type { SymbolicMode } from './compare.js';
import { ABS_TOL } from './numeric.js';

/** Free variables beyond this make the random-point test meaningless; such pairs are undecided. */
const MAX_VARIABLES = 6;
/** Relative tolerance when neither side has a decimal point (float evaluation error is ~1e-15). */
const EXACT_REL_TOL = 1e-9;
/** Evaluation points per comparison. */
const POINTS = 5;

type Expr = NonNullable<ReturnType<ComputeEngine['parse']>>;

/**
 * Deterministic points in [0.5, 2.5): positive, away from 0 and 1, so sqrt/log/division are defined. With
 * `integers` (an expression with a sum or product), whole numbers in [12, 28): a variable limit such as
 * the `n` of `\sum_{k=5}^{n} k` must make the sum non-empty, or every such sum would equal 0.
 */
function samplePoints(vars: readonly string[], integers = false): Record<string, number>[] {
  let seed = 0x9e3779b9;
  const next = (): number => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed / 2 ** 32;
  };
  const out: Record<string, number>[] = [];
  for (let k = 0; k < POINTS; k++) {
    const p: Record<string, number> = {};
    for (const v of vars) p[v] = integers ? 12 + Math.floor(16 * next()) : 0.5 + 2 * next();
    out.push(p);
  }
  return out;
}

/** Thrown by the fast evaluator for MathJSON it does not cover; the caller falls back to CE's own N(). */
class Unsupported extends Error {}

type Json = unknown;

const FACTORIAL_MAX = 170;

function factorial(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > FACTORIAL_MAX) return NaN;
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}

/**
 * A small real-valued evaluator for canonical MathJSON: arithmetic, powers and roots, trig, logs and
 * exponentials, factorial and binomial. It is ~1000x faster than compiling with CE (which costs
 * 2–25 ms per expression) and covers the answer shapes MATH uses; anything else (complex numbers,
 * sums, integrals, …) throws Unsupported and is evaluated by CE.
 */
function evalJson(j: Json, vars: Record<string, number>, depth = 0): number {
  if (depth > 200) throw new Unsupported('too deep');
  if (typeof j === 'number') return j;
  if (typeof j === 'string') {
    if (j in vars) return vars[j] as number;
    switch (j) {
      case 'Pi':
        return Math.PI;
      case 'ExponentialE':
      case 'e': // as CE's canonical form reads a lone `e`
        return Math.E;
      case 'PositiveInfinity':
        return Infinity;
      case 'NegativeInfinity':
        return -Infinity;
      case 'Half':
        return 0.5;
      case 'Nothing':
        throw new Unsupported(j);
      default:
        if (/^[+-]?\d/.test(j)) return Number(j);
        throw new Unsupported(j);
    }
  }
  if (j !== null && typeof j === 'object' && !Array.isArray(j)) {
    const o = j as Record<string, unknown>;
    if (typeof o['num'] === 'string') return Number(o['num'].replace(/[^0-9eE.+-]/g, ''));
    if (typeof o['sym'] === 'string') return evalJson(o['sym'], vars, depth + 1);
    if (Array.isArray(o['fn'])) return evalJson(o['fn'], vars, depth + 1);
    throw new Unsupported('object');
  }
  if (!Array.isArray(j) || typeof j[0] !== 'string') throw new Unsupported('shape');
  const op = j[0];
  if (op === 'Delimiter') {
    // Grouping parentheses only; tuples, lists and other fences are not numbers.
    const inner: Json = j[1];
    const style: Json = j[2];
    if (style !== undefined && style !== "'()'" && style !== "'(,)'") throw new Unsupported('fence');
    if (Array.isArray(inner) && inner[0] === 'Sequence') {
      if (inner.length !== 2) throw new Unsupported('sequence');
      return evalJson(inner[1], vars, depth + 1);
    }
    return evalJson(inner, vars, depth + 1);
  }
  const args = j.slice(1).map((x: Json) => evalJson(x, vars, depth + 1));
  const [x = NaN, y = NaN] = args;
  switch (op) {
    case 'Add':
      return args.reduce((s, v) => s + v, 0);
    case 'Multiply':
    case 'InvisibleOperator': // juxtaposition in the non-canonical form: 2x, 2\pi, x(x+1)
      return args.reduce((s, v) => s * v, 1);
    case 'Subtract':
      return args.length === 1 ? -x : x - y;
    case 'Negate':
      return -x;
    case 'Divide':
    case 'Rational':
      return x / y;
    case 'Power':
      return x ** y;
    case 'Square':
      return x * x;
    case 'Sqrt':
      return Math.sqrt(x);
    case 'Root':
      return x < 0 && Number.isInteger(y) && y % 2 === 1 ? -((-x) ** (1 / y)) : x ** (1 / y);
    case 'Exp':
      return Math.exp(x);
    case 'Ln':
      return Math.log(x);
    case 'Log':
      return args.length === 1 ? Math.log10(x) : Math.log(x) / Math.log(y);
    case 'Lb':
      return Math.log2(x);
    case 'Lg':
      return Math.log10(x);
    case 'Sin':
      return Math.sin(x);
    case 'Cos':
      return Math.cos(x);
    case 'Tan':
      return Math.tan(x);
    case 'Cot':
      return 1 / Math.tan(x);
    case 'Sec':
      return 1 / Math.cos(x);
    case 'Csc':
      return 1 / Math.sin(x);
    case 'Arcsin':
      return Math.asin(x);
    case 'Arccos':
      return Math.acos(x);
    case 'Arctan':
      return args.length === 1 ? Math.atan(x) : Math.atan2(x, y);
    case 'Sinh':
      return Math.sinh(x);
    case 'Cosh':
      return Math.cosh(x);
    case 'Tanh':
      return Math.tanh(x);
    case 'Abs':
      return Math.abs(x);
    case 'Factorial':
      return factorial(x);
    case 'Binomial':
      return factorial(x) / (factorial(y) * factorial(x - y));
    case 'Degrees':
      return (x * Math.PI) / 180;
    default:
      throw new Unsupported(op);
  }
}

/** An evaluator: the fast MathJSON one when it covers the expression, else CE's own numeric evaluation. */
type Evaluator = (point: Record<string, number>) => [number, number];

function evaluator(ce: ComputeEngine, e: Expr): Evaluator {
  const json: Json = e.json;
  try {
    const probe: Record<string, number> = {};
    for (const v of e.freeVariables) probe[v] = 1.5;
    evalJson(json, probe);
    return (p) => [evalJson(json, p), 0];
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
  }
  return (p) => evalAt(ce, e, p);
}

/** A complex value as [re, im]; NaN when CE cannot evaluate it to a number. */
function evalAt(ce: ComputeEngine, e: Expr, point: Record<string, number>): [number, number] {
  const subs: Record<string, Expr> = {};
  for (const [k, v] of Object.entries(point)) subs[k] = ce.number(v);
  const n = (Object.keys(subs).length ? e.subs(subs) : e).N();
  const re = n.re;
  const im = n.im;
  return [typeof re === 'number' ? re : NaN, typeof im === 'number' ? im : 0];
}

function close(x: [number, number], y: [number, number], relTol: number): boolean {
  const scale = Math.max(Math.hypot(x[0], x[1]), Math.hypot(y[0], y[1]));
  return Math.hypot(x[0] - y[0], x[1] - y[1]) <= Math.max(ABS_TOL, relTol * scale);
}

function finite(x: [number, number]): boolean {
  return Number.isFinite(x[0]) && Number.isFinite(x[1]);
}

function variablesOf(...es: Expr[]): string[] {
  const set = new Set<string>();
  for (const e of es) for (const v of e.freeVariables) set.add(v);
  return [...set].sort();
}

/** Whether A and B take the same value at every sample point (null: not decidable). */
/** Whether an expression holds a sum or product, whose limits need whole-number sample points. */
function hasSumOrProduct(...es: Expr[]): boolean {
  return es.some((e) => /"(?:Sum|Product)"/.test(JSON.stringify(e.json)));
}

function sameFunction(ce: ComputeEngine, a: Expr, b: Expr, relTol: number): boolean | null {
  const vars = variablesOf(a, b);
  if (vars.length > MAX_VARIABLES) return null;
  const points = vars.length === 0 ? [{}] : samplePoints(vars, hasSumOrProduct(a, b));
  const fa = evaluator(ce, a);
  const fb = evaluator(ce, b);
  let compared = 0;
  for (const p of points) {
    const x = fa(p);
    const y = fb(p);
    if (!finite(x) || !finite(y)) continue;
    if (!close(x, y, relTol)) return false;
    compared++;
  }
  return compared > 0 ? true : null;
}

/** Whether f = lhs1 − rhs1 and g = lhs2 − rhs2 are proportional (the same equation). */
function sameEquation(ce: ComputeEngine, a: Expr, b: Expr, relTol: number): boolean | null {
  if (!isFunction(a) || !isFunction(b) || a.nops !== 2 || b.nops !== 2) return null;
  const [a1, a2] = a.ops;
  const [b1, b2] = b.ops;
  if (!a1 || !a2 || !b1 || !b2) return null;
  return proportional(ce, ce.box(['Subtract', a1, a2]), ce.box(['Subtract', b1, b2]), relTol, false);
}

/**
 * Whether f = c·g for one constant c ≠ 0 at every sample point (c > 0 when `positive`: the same
 * inequality g > 0). Null when no point decides.
 */
function proportional(
  ce: ComputeEngine,
  f: Expr,
  g: Expr,
  relTol: number,
  positive: boolean,
): boolean | null {
  const vars = variablesOf(f, g);
  if (vars.length > MAX_VARIABLES) return null;
  let ratio: [number, number] | null = null;
  const ff = evaluator(ce, f);
  const fg = evaluator(ce, g);
  for (const p of vars.length === 0 ? [{}] : samplePoints(vars, hasSumOrProduct(f, g))) {
    const x = ff(p);
    const y = fg(p);
    if (!finite(x) || !finite(y)) continue;
    const ny = Math.hypot(y[0], y[1]);
    if (ny <= ABS_TOL) {
      if (Math.hypot(x[0], x[1]) > ABS_TOL) return false;
      continue;
    }
    // x / y for complex numbers.
    const r: [number, number] = [
      (x[0] * y[0] + x[1] * y[1]) / (ny * ny),
      (x[1] * y[0] - x[0] * y[1]) / (ny * ny),
    ];
    if (ratio === null) ratio = r;
    else if (!close(ratio, r, relTol)) return false;
  }
  if (ratio === null) return null;
  if (positive) return Math.abs(ratio[1]) <= ABS_TOL && ratio[0] > ABS_TOL;
  return Math.hypot(ratio[0], ratio[1]) > ABS_TOL ? true : null;
}

/** Symbols of the non-canonical form that are constants, not variables. */
const CONSTANTS = new Set(['Pi', 'ExponentialE', 'e', 'PositiveInfinity', 'NegativeInfinity', 'Half']);

/** The variables of a non-canonical MathJSON tree (symbols in argument positions). */
function jsonVariables(j: Json, out: Set<string>, depth = 0): void {
  if (depth > 200) throw new Unsupported('too deep');
  if (typeof j === 'string') {
    if (j === 'i' || j === 'ImaginaryUnit' || j === 'Nothing') throw new Unsupported(j);
    if (!CONSTANTS.has(j) && !/^[+-]?\d/.test(j) && !j.startsWith("'")) out.add(j);
  } else if (Array.isArray(j)) {
    for (let k = 1; k < j.length; k++) jsonVariables(j[k], out, depth + 1);
  }
}

/** Largest exact integer the BigInt evaluator builds (bits); beyond it the float path decides. */
const MAX_EXACT_BITS = 4_096n;

/**
 * Exact integer arithmetic over raw MathJSON (+, −, ×, juxtaposition, integer powers, factorial), or null
 * when the tree holds anything else. Used for variable-free sides, where the float test would call
 * 2^{100}+1 and 2^{100} equal (their relative difference is 1e-30).
 */
function exactInt(j: Json, depth = 0): bigint | null {
  if (depth > 100) return null;
  if (typeof j === 'number') return Number.isSafeInteger(j) ? BigInt(j) : null;
  if (typeof j === 'string') return /^[+-]?\d{1,400}$/.test(j) ? BigInt(j) : null;
  if (j !== null && typeof j === 'object' && !Array.isArray(j)) {
    const num = (j as Record<string, unknown>)['num'];
    return typeof num === 'string' && /^[+-]?\d{1,400}$/.test(num) ? BigInt(num) : null;
  }
  if (!Array.isArray(j)) return null;
  const op: Json = j[0];
  if (op === 'Delimiter') return j.length === 2 ? exactInt(j[1], depth + 1) : null;
  const args: bigint[] = [];
  for (let k = 1; k < j.length; k++) {
    const v = exactInt(j[k], depth + 1);
    if (v === null) return null;
    args.push(v);
  }
  const [x, y] = args;
  const big = (v: bigint): bigint | null =>
    (v < 0n ? -v : v).toString(2).length > MAX_EXACT_BITS ? null : v;
  switch (op) {
    case 'Add':
      return big(args.reduce((s, v) => s + v, 0n));
    case 'Subtract':
      return x === undefined ? null : y === undefined ? -x : big(x - y);
    case 'Negate':
      return x === undefined ? null : -x;
    case 'Multiply':
    case 'InvisibleOperator':
      return big(args.reduce((s, v) => s * v, 1n));
    case 'Power': {
      if (x === undefined || y === undefined || y < 0n) return null;
      const bits = BigInt((x < 0n ? -x : x).toString(2).length);
      if (bits * y > MAX_EXACT_BITS) return null;
      return x ** y;
    }
    case 'Factorial': {
      if (x === undefined || x < 0n || x > 500n) return null;
      let f = 1n;
      for (let i = 2n; i <= x; i++) f *= i;
      return f;
    }
    default:
      return null;
  }
}

/**
 * The fast path: CE's NON-canonical parse (5–10x cheaper than the canonical one) evaluated by evalJson.
 * Returns 'unsupported' when either side has a shape the fast evaluator does not cover (equations, tuples,
 * complex numbers, …); the canonical path then decides.
 */
function fastCompare(
  ce: ComputeEngine,
  raw: RawParses,
  a: string,
  b: string,
  relTol: number,
): boolean | null | 'unsupported' {
  const ja = raw.get(ce, a);
  const jb = raw.get(ce, b);
  if (ja === null || jb === null) return 'unsupported';
  try {
    const vars = new Set<string>();
    jsonVariables(ja, vars);
    jsonVariables(jb, vars);
    if (vars.size > MAX_VARIABLES) return null;
    if (vars.size === 0) {
      const xa = exactInt(ja);
      const xb = exactInt(jb);
      if (xa !== null && xb !== null) return xa === xb;
    }
    const points = vars.size === 0 ? [{}] : samplePoints([...vars].sort());
    let compared = 0;
    for (const p of points) {
      const x = evalJson(ja, p);
      const y = evalJson(jb, p);
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (!close([x, 0], [y, 0], relTol)) return false;
      compared++;
    }
    return compared > 0 ? true : 'unsupported';
  } catch (err) {
    if (err instanceof Unsupported) return 'unsupported';
    throw err;
  }
}

/** Distinct strings whose raw parse a check keeps (each at most the verifier's 500 characters). */
export const RAW_PARSE_CACHE_ENTRIES = 1_024;

/**
 * CE's raw parses, as MathJSON, of the strings a check has seen most recently (least recently used
 * dropped first; null for a string that does not parse). Parsing is about 85 % of a fast-path check, and
 * its inputs repeat: the label of a prompt comes once per sampled answer (G times a group), and sampled
 * answers often agree. The MathJSON is plain data that the evaluator only reads; null stands for a
 * string that does not parse.
 */
export class RawParses {
  private readonly cache = new Map<string, Json>();
  hits = 0;
  misses = 0;

  constructor(private readonly capacity = RAW_PARSE_CACHE_ENTRIES) {}

  get(ce: ComputeEngine, s: string): Json {
    const known = this.cache.get(s);
    if (known !== undefined) {
      this.hits++;
      // Re-insert: a Map iterates in insertion order, so its first key is the least recently used.
      this.cache.delete(s);
      this.cache.set(s, known);
      return known;
    }
    this.misses++;
    const e = ce.parse(s, { form: 'raw' });
    const json: Json = e === null || !e.isValid ? null : e.json;
    this.cache.set(s, json);
    if (this.cache.size > this.capacity) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    return json;
  }

  get size(): number {
    return this.cache.size;
  }
}

/** Values CE parses but that are not mathematical expressions (strings, errors). */
function usable(e: Expr | null): e is Expr {
  return e !== null && e.isValid && e.operator !== 'String' && e.operator !== 'Error';
}

/** Builds the symbolic check over one compute engine (created once per worker: it is slow to start). */
export function createSymbolicCheck(): (
  a: string,
  b: string,
  relTol: number,
  mode?: SymbolicMode,
) => boolean | null {
  const ce = new ComputeEngine();
  const raw = new RawParses();
  return (a: string, b: string, relTolIn: number, mode: SymbolicMode = 'equal'): boolean | null => {
    // Exact expressions on both sides agree to float precision; the looser numeric tolerance is only for
    // a side written as a rounded decimal (0.7071068 for \frac{\sqrt{2}}{2}).
    const relTol = /\d\.\d|(^|[^\d])\.\d/.test(a + ' ' + b) ? relTolIn : Math.min(relTolIn, EXACT_REL_TOL);
    ce.pushScope();
    try {
      if (mode !== 'equal') {
        const ea = ce.parse(a);
        const eb = ce.parse(b);
        if (!usable(ea) || !usable(eb)) return null;
        return proportional(ce, ea, eb, relTol, mode === 'positive-multiple');
      }
      const fast = fastCompare(ce, raw, a, b, relTol);
      if (fast !== 'unsupported') return fast;
      const ea = ce.parse(a);
      const eb = ce.parse(b);
      if (!usable(ea) || !usable(eb)) return null;
      const aEq = ea.operator === 'Equal';
      const bEq = eb.operator === 'Equal';
      if (aEq && bEq) return sameEquation(ce, ea, eb, relTol);
      if (aEq || bEq) return null;
      return sameFunction(ce, ea, eb, relTol);
    } catch {
      return null;
    } finally {
      ce.popScope();
    }
  };
}
