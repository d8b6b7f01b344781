// The symbolic rule: equivalence of two LaTeX expressions through @cortex-js/compute-engine (see
// docs/verifier.md for why this library). Both sides are parsed; constants are compared by numeric
// evaluation, expressions with free variables by evaluating their difference at fixed pseudo-random points
// (a zero-test that catches every identity CE's simplifier misses, e.g. (x+1)^2 = x^2+2x+1, sin²+cos² = 1).
// Equations compare their (lhs − rhs) up to a non-zero constant factor. This module only runs inside the
// stoppable worker (symbolic-worker.ts): parsing can take unbounded time on hostile input.

import { ComputeEngine, compile, isFunction } from '@cortex-js/compute-engine';

import { ABS_TOL } from './numeric.js';

/** Free variables beyond this make the random-point test meaningless; such pairs are undecided. */
const MAX_VARIABLES = 6;
/** Evaluation points per comparison. */
const POINTS = 5;

type Expr = NonNullable<ReturnType<ComputeEngine['parse']>>;

/** Deterministic points in [0.5, 2.5): positive, away from 0 and 1, so sqrt/log/division are defined. */
function samplePoints(vars: readonly string[]): Record<string, number>[] {
  let seed = 0x9e3779b9;
  const next = (): number => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed / 2 ** 32;
  };
  const out: Record<string, number>[] = [];
  for (let k = 0; k < POINTS; k++) {
    const p: Record<string, number> = {};
    for (const v of vars) p[v] = 0.5 + 2 * next();
    out.push(p);
  }
  return out;
}

/** An evaluator: compiled to JavaScript when CE can (fast), else CE's own numeric evaluation. */
type Evaluator = (point: Record<string, number>) => [number, number];

function evaluator(ce: ComputeEngine, e: Expr): Evaluator {
  try {
    const c = compile(e);
    if (c.success && typeof c.run === 'function') {
      const run: (vars: Record<string, number>) => unknown = c.run;
      return (p) => {
        const v = run(p);
        if (typeof v === 'number') return [v, 0];
        if (v !== null && typeof v === 'object' && 're' in v && 'im' in v) {
          return [Number(v.re), Number(v.im)];
        }
        return [NaN, 0];
      };
    }
  } catch {
    // fall through to CE's numeric evaluation
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
function sameFunction(ce: ComputeEngine, a: Expr, b: Expr, relTol: number): boolean | null {
  const vars = variablesOf(a, b);
  if (vars.length > MAX_VARIABLES) return null;
  const points = vars.length === 0 ? [{}] : samplePoints(vars);
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
  const f = ce.box(['Subtract', a1, a2]);
  const g = ce.box(['Subtract', b1, b2]);
  const vars = variablesOf(f, g);
  if (vars.length > MAX_VARIABLES) return null;
  let ratio: [number, number] | null = null;
  const ff = evaluator(ce, f);
  const fg = evaluator(ce, g);
  for (const p of samplePoints(vars)) {
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
  return Math.hypot(ratio[0], ratio[1]) > ABS_TOL ? true : null;
}

/** Values CE parses but that are not mathematical expressions (strings, errors). */
function usable(e: Expr | null): e is Expr {
  return e !== null && e.isValid && e.operator !== 'String' && e.operator !== 'Error';
}

/** Builds the symbolic check over one compute engine (created once per worker: it is slow to start). */
export function createSymbolicCheck(): (a: string, b: string, relTol: number) => boolean | null {
  const ce = new ComputeEngine();
  return (a: string, b: string, relTol: number): boolean | null => {
    ce.pushScope();
    try {
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
