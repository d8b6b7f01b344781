// The learning-rate schedule of a job's RL updates (docs/method.md "Deviations from the reference"): linear warm-up over
// `warmupRatio × total` optimizer steps, then cosine decay to `minLrRatio × peak`, counting the optimizer
// steps of BOTH the policy and the reward phase (so the curve never turns back up). `constant` keeps the
// peak. Supervised warm-up tasks do not advance this counter: their lr is `warmupLearningRate`, constant or (with
// `warmupLrSchedule: cosine`) this cosine over the warm-up's own steps with no linear warm-up (the coordinator's
// `warmupLearningRate()`). Shared by the learner (RL updates) and the coordinator (warm-up tasks).
import { InvalidArgumentError } from '@spark/runtime';

export interface LrSchedule {
  readonly kind: 'cosine' | 'constant';
  /** Fraction of the total optimizer steps spent in linear warm-up, in [0, 1). */
  readonly warmupRatio: number;
  /** Final lr as a fraction of the peak, in [0, 1]. */
  readonly minLrRatio: number;
}

export const DEFAULT_SCHEDULE: LrSchedule = Object.freeze({
  kind: 'cosine',
  warmupRatio: 0.03,
  minLrRatio: 0.1,
});

/** The schedule of a job spec; zero/empty fields take the documented defaults (docs/jobs.md). */
export function scheduleFromSpec(spec: {
  lrSchedule: string;
  lrWarmupRatio: number;
  minLrRatio: number;
}): LrSchedule {
  const kind = spec.lrSchedule === '' ? DEFAULT_SCHEDULE.kind : spec.lrSchedule;
  if (kind !== 'cosine' && kind !== 'constant') {
    throw new InvalidArgumentError(`lr schedule must be "cosine" or "constant", got "${kind}"`);
  }
  const warmupRatio = spec.lrWarmupRatio || DEFAULT_SCHEDULE.warmupRatio;
  const minLrRatio = spec.minLrRatio || DEFAULT_SCHEDULE.minLrRatio;
  if (!(warmupRatio >= 0 && warmupRatio < 1))
    throw new InvalidArgumentError(`lr warm-up ratio must be in [0, 1), got ${warmupRatio}`);
  if (!(minLrRatio >= 0 && minLrRatio <= 1))
    throw new InvalidArgumentError(`min lr ratio must be in [0, 1], got ${minLrRatio}`);
  return { kind, warmupRatio, minLrRatio };
}

/**
 * The lr of optimizer step `step` (0-based) of `total` (the coordinator's estimate; `null` = unknown →
 * constant peak). Past the end of the horizon the lr stays at the floor.
 */
export function learningRateAt(
  schedule: LrSchedule,
  peak: number,
  step: number,
  total: number | null,
): number {
  if (schedule.kind === 'constant' || total === null || total <= 0) return peak;
  const warmup = Math.ceil(schedule.warmupRatio * total);
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  const floor = schedule.minLrRatio;
  return peak * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}
