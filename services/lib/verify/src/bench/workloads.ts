// Workloads and the timing loop shared by the verifier benchmark (bench.ts) and the before/after
// comparison of the adversarial set (adversarial-ab.ts). Inputs come from a fixed seed.
import type { ItemOptions, VerifyResult } from '../index.js';

export interface Item {
  readonly response: string;
  readonly label: string;
  readonly opts?: ItemOptions;
}

/** What the timing loop needs of a verifier (also met by older builds of the library). */
export interface VerifierLike {
  verify(response: unknown, label: unknown, item?: ItemOptions): Promise<VerifyResult>;
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export const rand = rng(20_261_125);
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const box = (s: string): string =>
  `Let me work through it step by step. ... Therefore the answer is $\\boxed{${s}}$.`;

/** GSM8K/MATH-style numeric answers: integers with separators, decimals, fractions, percentages. */
export function numericItem(): Item {
  const n = int(1, 2_000_000);
  const wrong = rand() < 0.3;
  switch (int(0, 5)) {
    case 0:
      return { response: box(n.toLocaleString('en-US')), label: String(wrong ? n + 1 : n) };
    case 1:
      return { response: box(String(n)), label: String(wrong ? n * 10 : n) };
    case 2: {
      const d = int(2, 97);
      return {
        response: box(`\\frac{${n % 1000}}{${d}}`),
        label: (wrong ? (n % 1000) + 1 : n % 1000) / d + '',
      };
    }
    case 3:
      return { response: box(`${n % 100}\\%`), label: String(wrong ? (n % 100) / 10 : (n % 100) / 100) };
    case 4:
      return {
        response: `Step 1 ... Step 2 ...\n#### ${n}`,
        label: String(wrong ? n - 1 : n),
        opts: { gsm8k: true },
      };
    default:
      return { response: box(`${(n / 1000).toFixed(3)}`), label: (wrong ? n + 7 : n) / 1000 + '' };
  }
}

/**
 * Symbolic answers that need the compute engine: radicals, polynomial and trig/log identities. With the
 * default coefficients (2–9) a thousand items hold about 300 distinct answers and 270 distinct labels, as
 * RL's groups repeat a label for every sampled answer; `hi` = 999 makes nearly every item new (what the
 * verifier's caches cannot help with).
 */
export function symbolicItem(hi = 9): Item {
  const a = int(2, hi);
  const b = int(2, hi);
  const wrong = rand() < 0.3;
  const k = wrong ? a + 1 : a;
  switch (int(0, 6)) {
    case 0:
      return { response: box(`${a}\\sqrt{${b}}`), label: `\\sqrt{${k * k * b}}` };
    case 1:
      return { response: box(`(x+${a})^2`), label: `x^2+${2 * k}x+${a * a}` };
    case 2:
      return { response: box(`(x-${a})(x+${b})`), label: `x^2+${b - k}x-${a * b}` };
    case 3:
      return { response: box(`${a}\\sin^2 x+${a}\\cos^2 x`), label: `${k}` };
    case 4: {
      // A large base to a large power is not an exact double: keep the exponent at 2–5 there.
      const e = hi > 9 ? 2 + (b % 4) : b;
      return { response: box(`\\log_{${a}} ${a ** e}`), label: `${wrong ? e + 1 : e}` };
    }
    case 5:
      return { response: box(`\\frac{${a}}{\\sqrt{${b}}}`), label: `\\frac{${k}\\sqrt{${b}}}{${b}}` };
    default:
      return { response: box(`${a}x+${b}y`), label: `${b}y+${k}x` };
  }
}

/** Junk: no box, empty or unterminated boxes, prose in a box, random bytes, runaway output. */
export function junkItem(): Item {
  const label = String(int(1, 999));
  switch (int(0, 5)) {
    case 0:
      return {
        response: 'I am not sure how to solve this problem. Let me think again. '.repeat(int(1, 20)),
        label,
      };
    case 1:
      return { response: `The answer is \\boxed{${label}`, label };
    case 2:
      return { response: box('the number of apples'), label };
    case 3:
      return {
        response: Array.from({ length: 200 }, () => String.fromCharCode(int(32, 0x2fff))).join(''),
        label,
      };
    case 4:
      return { response: box(''), label };
    default:
      return { response: `${'blah '.repeat(2_000)}\\boxed{${int(1, 999)}}`, label };
  }
}

/** Adversarial inputs: engine-hanging expressions, deep nesting, huge numbers, megabyte strings. */
export function adversarialItems(): Item[] {
  const mb = 'x'.repeat((1 << 20) - 64);
  return [
    { response: box('100000!'), label: '1' },
    { response: box('\\prod_{k=1}^{100000} k'), label: '1' },
    { response: box('\\binom{100000}{50000}'), label: '1' },
    { response: box(`${'\\sqrt{'.repeat(30)}x${'}'.repeat(30)}`), label: 'x' },
    { response: box(`${'x+'.repeat(240)}1`), label: '1' },
    { response: box('\\int_0^1 \\sin(x^2) dx'), label: '1' },
    { response: box(`${'{'.repeat(1_000)}1${'}'.repeat(1_000)}`), label: '1' },
    { response: box('9'.repeat(1_999)), label: '9' },
    { response: box('1e999999'), label: '1' },
    { response: `${mb}\\boxed{42}`, label: '42' },
    { response: `\\boxed{${'{'.repeat((1 << 20) - 16)}`, label: '1' },
    { response: '\\boxed{1}'.repeat(100_000), label: '1' },
  ];
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export interface Row {
  readonly name: string;
  readonly n: number;
  readonly perSecond: number;
  /** Wall latency of a call, as the caller sees it (includes any wait for a worker). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /**
   * Largest time charged to a call's budget: the symbolic step's CPU time in its worker (`symbolicMs`),
   * which is what the budget is enforced on (wall-clock where /proc is unavailable). NaN with a build
   * that does not report timing.
   */
  readonly maxChargedMs: number;
  /** Largest wall latency less the wait for a worker (CPU time plus time descheduled under load). */
  readonly maxWallLessWaitMs: number;
  /** Total and largest wait for a worker, not charged to any budget (NaN without timing). */
  readonly waitTotalMs: number;
  readonly maxWaitMs: number;
  readonly reward1: number;
  /** Calls whose symbolic step hit the budget (reward 0 by time-out). */
  readonly timeouts: number;
}

export async function measure(v: VerifierLike, name: string, items: readonly Item[]): Promise<Row> {
  const lat: number[] = [];
  let ones = 0;
  let timeouts = 0;
  let maxCharged = 0;
  let maxWallLessWait = 0;
  let waitTotal = 0;
  let maxWait = 0;
  let timed = true;
  const t0 = performance.now();
  for (const it of items) {
    const s = performance.now();
    const r = await v.verify(it.response, it.label, { ...it.opts, timing: true });
    const wall = performance.now() - s;
    lat.push(wall);
    ones += r.reward;
    if (r.reason.includes('symbolic-timeout')) timeouts++;
    if (r.waitMs === undefined || r.symbolicMs === undefined) {
      timed = false;
      continue;
    }
    maxCharged = Math.max(maxCharged, r.symbolicMs);
    maxWallLessWait = Math.max(maxWallLessWait, wall - r.waitMs);
    waitTotal += r.waitMs;
    maxWait = Math.max(maxWait, r.waitMs);
  }
  const total = performance.now() - t0;
  lat.sort((a, b) => a - b);
  return {
    name,
    n: items.length,
    perSecond: items.length / (total / 1000),
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat[lat.length - 1] ?? NaN,
    maxChargedMs: timed ? maxCharged : NaN,
    maxWallLessWaitMs: timed ? maxWallLessWait : NaN,
    waitTotalMs: timed ? waitTotal : NaN,
    maxWaitMs: timed ? maxWait : NaN,
    reward1: ones / items.length,
    timeouts,
  };
}
