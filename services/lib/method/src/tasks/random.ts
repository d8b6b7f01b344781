// Seeded randomness: the one small PRNG every deterministic part of Spark's task and recycling code uses.
// xoshiro128** (32-bit state words, fast in JS without BigInt), seeded through splitmix32 from a number or a
// string, so `new Rng(42)` and `new Rng('job-7/step-3')` always give the same stream on every machine.
// `fork(label)` derives an independent child stream, so adding a draw in one place does not shift others.

/** One step of splitmix32: mixes a 32-bit state into a well-spread 32-bit output. */
function splitmix32(state: number): [next: number, out: number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

/**
 * 32-bit FNV-1a over the UTF-16 code units of `text`, finished with a murmur-style avalanche. Stable across
 * platforms; used for seeds and for the split assignment of generated problems (not cryptographic).
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A seed: a finite number (its integer bits are used) or any string. */
export type Seed = number | string;

function seedToWord(seed: Seed): number {
  if (typeof seed === 'string') return hash32(seed);
  if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
  // Fold the high bits of large integers in so that seeds above 2^32 still differ.
  const hi = Math.floor(seed / 0x100000000);
  return (seed ^ Math.imul(hi | 0, 0x9e3779b1)) >>> 0;
}

/** xoshiro128**: a seeded pseudo-random generator with helpers for the draws Spark needs. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: Seed) {
    let st = seedToWord(seed);
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(st);
      st = next;
      words.push(out);
    }
    [this.s0, this.s1, this.s2, this.s3] = words as [number, number, number, number];
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** The next 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float uniform in [0, 1) with 32 bits of randomness. */
  next(): number {
    return this.nextU32() / 0x100000000;
  }

  /** An integer uniform in [lo, hi] (both inclusive); unbiased (rejection sampling). */
  int(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) {
      throw new RangeError(`int(${lo}, ${hi}): need integers with lo <= hi`);
    }
    const span = hi - lo + 1;
    if (span > 0x100000000) throw new RangeError(`int(${lo}, ${hi}): range wider than 2^32`);
    if (span === 0x100000000) return lo + this.nextU32();
    const limit = 0x100000000 - (0x100000000 % span);
    let x = this.nextU32();
    while (x >= limit) x = this.nextU32();
    return lo + (x % span);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  /** A uniformly chosen element; throws on an empty list. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick() from an empty list');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** A new array with the elements in a uniformly random order (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const tmp = out[i] as T;
      out[i] = out[j] as T;
      out[j] = tmp;
    }
    return out;
  }

  /** k elements drawn without replacement, in the original order of `items` (k is clamped to the length). */
  sample<T>(items: readonly T[], k: number): T[] {
    const n = items.length;
    const take = Math.max(0, Math.min(n, Math.floor(k)));
    const chosen = this.shuffle(items.map((_, i) => i)).slice(0, take);
    chosen.sort((a, b) => a - b);
    return chosen.map((i) => items[i] as T);
  }

  /** An independent child generator whose stream depends on this generator's seed state and `label`. */
  fork(label: string): Rng {
    return new Rng(`${this.s0},${this.s1},${this.s2},${this.s3}/${label}`);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
