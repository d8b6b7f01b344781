// The pure data side of an update: GRPO group advantages (docs/method.md "The GRPO update"), the deterministic shuffle
// of a phase's sequences, and cutting them into minibatches (one optimizer step each) and micro-batches
// (gradient accumulation inside a step).

/**
 * A_i = (r_i − mean(r)) / (std(r) + 1e-9) with the sample std (N − 1). Groups whose rewards are all equal
 * (and groups of one) get A = 0 for every response; they stay in the batch (reference behaviour).
 */
export function groupAdvantages(rewards: readonly number[]): number[] {
  const n = rewards.length;
  if (n < 2) return rewards.map(() => 0);
  const mean = rewards.reduce((a, b) => a + b, 0) / n;
  if (rewards.every((r) => r === rewards[0])) return rewards.map(() => 0);
  let ss = 0;
  for (const r of rewards) ss += (r - mean) ** 2;
  const std = Math.sqrt(ss / (n - 1));
  return rewards.map((r) => (r - mean) / (std + 1e-9));
}

/** A 32-bit seed from any strings/numbers (FNV-1a over their text), for the shuffle of one phase. */
export function mixSeed(...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    const s = `${String(part)}\u0000`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** mulberry32: a small deterministic PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Fisher–Yates shuffled copy, deterministic in `seed`. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const rand = prng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = out[i] as T;
    out[i] = out[j] as T;
    out[j] = tmp;
  }
  return out;
}

/** Consecutive slices of at most `size` items (the last may be shorter). */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const n = Math.max(1, Math.floor(size));
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}
