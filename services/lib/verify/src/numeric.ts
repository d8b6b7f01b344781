// Numeric reading of a normalised answer: integers, decimals, fractions (`\frac{a}{b}`, `a/b`), mixed
// numbers (`3\frac{1}{2}`), scientific notation (`1.5e3`, `1.5\times10^{3}`, `10^{6}`) and rational
// multiples of π. Values are exact rationals (BigInt) times π^k where possible, so integers of any length
// compare exactly; a float tolerance applies only where a value is not exact (see `numbersEqual`).

/** An exact value num/den · π^pi, with den > 0. */
export interface NumericValue {
  readonly num: bigint;
  readonly den: bigint;
  /** Power of π (0 or 1). */
  readonly pi: 0 | 1;
}

/** Relative tolerance for inexact comparisons, and the absolute floor near zero. */
export const DEFAULT_REL_TOL = 1e-6;
export const ABS_TOL = 1e-9;
/** Largest power of ten expanded exactly (`1e400` is fine; `1e100000000` is refused, not expanded). */
const MAX_EXPONENT = 400;
/** Longest digit string read exactly. */
const MAX_DIGITS = 1_000;

function gcd(a: bigint, b: bigint): bigint {
  a = a < 0n ? -a : a;
  b = b < 0n ? -b : b;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function make(num: bigint, den: bigint, pi: 0 | 1): NumericValue | null {
  if (den === 0n) return null;
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  const g = gcd(num, den);
  return g > 1n ? { num: num / g, den: den / g, pi } : { num, den, pi };
}

/** `12`, `-3.25`, `.5`, `1.5e-3` → exact rational. */
function parseDecimal(s: string): NumericValue | null {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,6}))?$/.exec(s);
  if (!m) return null;
  const sign = m[1] === '-' ? -1n : 1n;
  const intPart = m[2] ?? '';
  const fracPart = m[3] ?? '';
  if (intPart === '' && fracPart === '') return null;
  if (intPart.length + fracPart.length > MAX_DIGITS) return null;
  const exp = (m[4] === undefined ? 0 : Number(m[4])) - fracPart.length;
  if (Math.abs(exp) > MAX_EXPONENT + MAX_DIGITS) return null;
  const digits = BigInt((intPart + fracPart).replace(/^0+(?=\d)/, '') || '0');
  const pow = 10n ** BigInt(Math.abs(exp));
  return exp >= 0 ? make(sign * digits * pow, 1n, 0) : make(sign * digits, pow, 0);
}

/** `10^{6}`, `10^6`, `10^{-3}`. */
function parsePow10(s: string): NumericValue | null {
  const m = /^10\^(?:\{([+-]?\d{1,4})\}|(\d))$/.exec(s);
  if (!m) return null;
  const e = Number(m[1] ?? m[2]);
  if (Math.abs(e) > MAX_EXPONENT) return null;
  const pow = 10n ** BigInt(Math.abs(e));
  return e >= 0 ? make(pow, 1n, 0) : make(1n, pow, 0);
}

/** a · 10^-2: the fraction a percentage stands for. */
export function percentOf(a: NumericValue): NumericValue {
  return make(a.num, a.den * 100n, a.pi) ?? a;
}

function mul(a: NumericValue, b: NumericValue): NumericValue | null {
  if (a.pi + b.pi > 1) return null;
  return make(a.num * b.num, a.den * b.den, (a.pi + b.pi) as 0 | 1);
}

function div(a: NumericValue, b: NumericValue): NumericValue | null {
  if (b.num === 0n) return null;
  if (a.pi - b.pi < 0) return null;
  return make(a.num * b.den, a.den * b.num, (a.pi - b.pi) as 0 | 1);
}

const PI: NumericValue = { num: 1n, den: 1n, pi: 1 };

/** One factor without a sign: decimal, power of ten, mantissa×10^e, `k\pi`, `\pi`. */
function parseFactor(s: string): NumericValue | null {
  if (s === '') return null;
  const dec = parseDecimal(s);
  if (dec) return dec;
  const p10 = parsePow10(s);
  if (p10) return p10;
  const sci = /^(\d+(?:\.\d+)?)(?:\\times|\\cdot|\*|x)(10\^.+)$/.exec(s);
  if (sci && sci[1] !== undefined && sci[2] !== undefined) {
    const a = parseDecimal(sci[1]);
    const b = parsePow10(sci[2]);
    return a && b ? mul(a, b) : null;
  }
  if (s.endsWith('\\pi')) {
    const k = s.slice(0, -3);
    if (k === '') return PI;
    const kv = parseFactor(k.replace(/(\\cdot|\\times|\*)$/, ''));
    return kv ? mul(kv, PI) : null;
  }
  return null;
}

/** Reads `{X}` at position `i` of `s` (one brace group); returns the inner text and the end index. */
function readGroup(s: string, i: number): { inner: string; end: number } | null {
  if (s[i] !== '{') return null;
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    if (s[j] === '{') depth++;
    else if (s[j] === '}') {
      depth--;
      if (depth === 0) return { inner: s.slice(i + 1, j), end: j + 1 };
    }
  }
  return null;
}

/**
 * Parses a normalised answer (no spaces) as a number. Returns null for anything that is not plainly a
 * number: variables, radicals, functions and lists go to the symbolic step instead.
 */
export function parseNumber(s: string, depth = 0): NumericValue | null {
  if (depth > 4 || s.length === 0 || s.length > 2 * MAX_DIGITS) return null;
  let sign = 1n;
  if (s.startsWith('-')) {
    sign = -1n;
    s = s.slice(1);
  } else if (s.startsWith('+')) s = s.slice(1);
  if (s.startsWith('-') || s.startsWith('+')) return null;
  let v: NumericValue | null = null;
  const fracAt = s.indexOf('\\frac');
  if (fracAt >= 0) {
    // [whole]\frac{a}{b}[\pi]: a fraction, or a mixed number when a whole-number part precedes it.
    const whole = s.slice(0, fracAt);
    const g1 = readGroup(s, fracAt + 5);
    const g2 = g1 ? readGroup(s, g1.end) : null;
    if (!g1 || !g2) return null;
    const tail = s.slice(g2.end);
    const a = parseNumber(g1.inner, depth + 1);
    const b = parseNumber(g2.inner, depth + 1);
    if (!a || !b) return null;
    let f = div(a, b);
    if (!f) return null;
    if (tail === '\\pi') f = mul(f, PI);
    else if (tail !== '') return null;
    if (!f) return null;
    if (whole === '') v = f;
    else if (/^\d+$/.test(whole) && f.pi === 0 && f.num >= 0n && f.num < f.den) {
      // Mixed number: 3\frac{1}{2} = 3 + 1/2 (the MATH convention for a whole part before a proper fraction).
      v = make(BigInt(whole) * f.den + f.num, f.den, 0);
    } else {
      const k = parseFactor(whole);
      v = k ? mul(k, f) : null;
    }
  } else {
    const slash = s.split('/');
    if (slash.length === 2 && slash[0] !== undefined && slash[1] !== undefined) {
      const a = parseFactor(slash[0]);
      const b = parseFactor(slash[1]);
      v = a && b ? div(a, b) : null;
    } else if (slash.length === 1) {
      v = parseFactor(s);
    }
  }
  if (!v) return null;
  return { num: sign * v.num, den: v.den, pi: v.pi };
}

/** The float value of an exact number (may be ±Infinity for huge ones). */
export function toFloat(v: NumericValue): number {
  const q = Number(v.num) / Number(v.den);
  let f = Number.isFinite(q) ? q : bigRatioToFloat(v.num, v.den);
  if (v.pi === 1) f *= Math.PI;
  return f;
}

function bigRatioToFloat(num: bigint, den: bigint): number {
  // Scale both to ~300 digits so the float division stays in range.
  const shift = BigInt(Math.max(0, num.toString().length - 300, den.toString().length - 300));
  const p = 10n ** shift;
  return Number(num / p) / Number(den / p);
}

/** Whether a rational has a terminating decimal expansion (denominator 2^a·5^b). */
function isTerminating(v: NumericValue): boolean {
  let d = v.den;
  while (d % 2n === 0n) d /= 2n;
  while (d % 5n === 0n) d /= 5n;
  return d === 1n;
}

export type NumericVerdict = 'exact' | 'tolerance' | 'different';

/**
 * Equality of two numbers. Exact rational equality first. The float tolerance (relative `relTol`, with an
 * absolute floor of 1e-9 near zero) is used only when the two are not both exact terminating decimals
 * with the same π power — i.e. when one side is a repeating fraction, a π multiple or a rounded decimal
 * of one. Two distinct integers or two distinct terminating decimals are therefore never "close enough".
 */
export function numbersEqual(a: NumericValue, b: NumericValue, relTol = DEFAULT_REL_TOL): NumericVerdict {
  if (a.pi === b.pi && a.num === b.num && a.den === b.den) return 'exact';
  if (a.pi === b.pi && isTerminating(a) && isTerminating(b)) return 'different';
  const x = toFloat(a);
  const y = toFloat(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return 'different';
  const scale = Math.max(Math.abs(x), Math.abs(y));
  return Math.abs(x - y) <= Math.max(ABS_TOL, relTol * scale) ? 'tolerance' : 'different';
}
