// The verifier benchmark (`pnpm bench:verifier [--json FILE]`): verifications per second and latency
// percentiles on a realistic mix of numeric, symbolic and junk responses, one at a time, on one core (the
// caller's thread plus one symbolic worker, never both busy at once), and the maximum latency under
// adversarial input against the time budget. Prints one table with ratios to the targets; --json writes
// every figure. Inputs are generated from a fixed seed, so runs are comparable.
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

import { Verifier, type ItemOptions } from '../index.js';

interface Item {
  readonly response: string;
  readonly label: string;
  readonly opts?: ItemOptions;
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

const rand = rng(20_261_125);
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const box = (s: string): string =>
  `Let me work through it step by step. ... Therefore the answer is $\\boxed{${s}}$.`;

/** GSM8K/MATH-style numeric answers: integers with separators, decimals, fractions, percentages. */
function numericItem(): Item {
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

/** Symbolic answers that need the compute engine: radicals, polynomial and trig/log identities. */
function symbolicItem(): Item {
  const a = int(2, 9);
  const b = int(2, 9);
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
    case 4:
      return { response: box(`\\log_{${a}} ${a ** b}`), label: `${wrong ? b + 1 : b}` };
    case 5:
      return { response: box(`\\frac{${a}}{\\sqrt{${b}}}`), label: `\\frac{${k}\\sqrt{${b}}}{${b}}` };
    default:
      return { response: box(`${a}x+${b}y`), label: `${b}y+${k}x` };
  }
}

/** Junk: no box, empty or unterminated boxes, prose in a box, random bytes, runaway output. */
function junkItem(): Item {
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
function adversarialItems(): Item[] {
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

interface Row {
  readonly name: string;
  readonly n: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly reward1: number;
  /** Calls whose symbolic step hit the budget (reward 0 by time-out). */
  readonly timeouts: number;
}

async function measure(v: Verifier, name: string, items: readonly Item[]): Promise<Row> {
  const lat: number[] = [];
  let ones = 0;
  let timeouts = 0;
  const t0 = performance.now();
  for (const it of items) {
    const s = performance.now();
    const r = await v.verify(it.response, it.label, it.opts ?? {});
    lat.push(performance.now() - s);
    ones += r.reward;
    if (r.reason.includes('symbolic-timeout')) timeouts++;
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
    reward1: ones / items.length,
    timeouts,
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const jsonPath = arg('--json');
  const scale = Number(arg('--scale') ?? '1');
  const budgetMs = 50;
  const v = new Verifier({ budgetMs, workers: 1, spares: 2 });
  await v.ready();
  // Warm the JIT on both threads before timing.
  await measure(v, 'warm-up', [
    ...Array.from({ length: 2_000 }, numericItem),
    ...Array.from({ length: 100 }, symbolicItem),
  ]);

  const numeric = Array.from({ length: Math.round(20_000 * scale) }, numericItem);
  const symbolic = Array.from({ length: Math.round(1_000 * scale) }, symbolicItem);
  const junk = Array.from({ length: Math.round(2_000 * scale) }, junkItem);
  const mix: Item[] = Array.from({ length: Math.round(10_000 * scale) }, () => {
    const u = rand();
    return u < 0.7 ? numericItem() : u < 0.9 ? symbolicItem() : junkItem();
  });
  const rows: Row[] = [];
  rows.push(await measure(v, 'numeric', numeric));
  rows.push(await measure(v, 'symbolic', symbolic));
  rows.push(await measure(v, 'junk', junk));
  rows.push(await measure(v, 'mix 70/20/10', mix));
  const termBefore = v.terminations;
  const adv = await measure(v, 'adversarial', adversarialItems());
  rows.push(adv);
  const terminated = v.terminations - termBefore;
  // After the adversarial run: are symbolic calls still fast (spare took over)?
  await v.ready();
  rows.push(await measure(v, 'symbolic after', symbolic.slice(0, 200)));
  await v.close();

  const num = rows[0] as Row;
  const sym = rows[1] as Row;
  const checks = [
    {
      figure: 'numeric verifications/s',
      value: num.perSecond,
      target: '>= 5000',
      ratio: num.perSecond / 5000,
      ok: num.perSecond >= 5000,
    },
    {
      figure: 'symbolic p99 ms',
      value: sym.p99Ms,
      target: '<= 20',
      ratio: sym.p99Ms / 20,
      ok: sym.p99Ms <= 20,
    },
    {
      figure: 'adversarial max ms',
      value: adv.maxMs,
      target: `budget ${budgetMs}`,
      ratio: adv.maxMs / budgetMs,
      ok: adv.maxMs <= budgetMs * 1.5,
    },
  ];

  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));
  const out: string[] = [];
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  out.push(
    `verifier benchmark (node ${process.version}, ${cpus().length} cores, load average ${load}; budget ${budgetMs} ms, 1 symbolic worker + 2 spares, sequential calls)`,
  );
  out.push('');
  out.push('| workload | n | verifications/s | p50 ms | p99 ms | max ms | reward=1 | time-outs |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    out.push(
      `| ${r.name} | ${r.n} | ${f(r.perSecond, 0)} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${f(r.maxMs, 2)} | ${f(r.reward1 * 100, 0)}% | ${r.timeouts} |`,
    );
  }
  out.push('');
  out.push('| target | measured | target | ratio | met |');
  out.push('| --- | ---: | --- | ---: | --- |');
  for (const c of checks)
    out.push(`| ${c.figure} | ${f(c.value, 2)} | ${c.target} | ${f(c.ratio, 2)} | ${c.ok ? 'yes' : 'NO'} |`);
  out.push('');
  out.push(`adversarial: ${terminated} worker terminations (hanging parses stopped at the budget)`);
  console.log(out.join('\n'));
  if (jsonPath) {
    writeFileSync(
      jsonPath,
      `${JSON.stringify({ node: process.version, cores: cpus().length, loadavg: loadavg(), budgetMs, rows, checks, adversarialTerminations: terminated }, null, 2)}\n`,
    );
  }
}

await main();
