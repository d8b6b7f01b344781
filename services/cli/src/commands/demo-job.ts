// The built-in demo job: a small model trained from scratch on the synthetic verifiable math tasks —
// supervised warm-up on worked solutions, then SPARK (policy phase, recycling into judge and reflection
// prompts, reward phase) — with held-out evaluation before and after RL. Every tunable of the demo lives
// here (the integrator tunes them so `spark demo` finishes in ≤ 15 minutes on a 2-core machine); `quick`
// is a minutes-long smoke version of the same pipeline.
import { Algorithm, JobSpec } from '@spark/protocol';

/**
 * The full demo (README: `npm run demo`): the demo preset on level-1 add/sub/compare/remainder (a ~0.8 M-param
 * char model learns these in minutes; the full mix stayed at ~3 %), 20000 generated train problems (warm-up
 * sees each ~2×, so it generalises instead of memorising), half of every warm-up batch judge-, reflection-
 * and re-solve-format pairs (so judge rewards are not all 0 when RL starts; at a quarter the warm-up model
 * judged at chance, at half 64.5 % pointwise, docs/results.md "A base that can judge"), 128 new tokens (the warm-up judge
 * check makes pairwise judge outputs up to 107 characters), 1500 warm-up steps (a 1200-step base at 32 %
 * did not improve under RL), RL lr 3e-4 with a fresh optimizer (docs/results.md "The demo": on the idle
 * 2-core machine in 463 s, held-out answers 68.0 → 79.7 % and the judge 74.2 → 83.4 % over the 24 SPARK
 * steps with OpenBLAS's AVX-512 kernels; with its AVX2 kernels and the built-in kernel the bases differ
 * (57.0 and 45.3 % answers) and so does the RL phase: docs/results.md "Which machine").
 */
export const DEMO_JOB: Readonly<Partial<JobSpec>> = Object.freeze({
  name: 'spark-demo',
  model: 'demo',
  dataset: 'builtin',
  algorithm: Algorithm.ALGORITHM_SPARK,
  seed: 7,
  taskFamilies: ['add', 'sub', 'compare', 'remainder'],
  taskMaxDifficulty: 1,
  trainSize: 20000,
  warmupJudgeFraction: 0.5,
  batchSize: 16,
  groupSize: 8,
  epochs: 1,
  maxSteps: 24,
  warmupSteps: 1500,
  warmupBatchSize: 32,
  warmupLearningRate: 3e-3,
  learningRate: 3e-4,
  lrSchedule: 'cosine',
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  temperature: 1.0,
  topP: 1.0,
  maxNewTokens: 128,
  miniBatchSize: 64,
  microBatchSize: 16,
  evalSize: 128,
  evalInterval: 8,
  checkpointInterval: 0,
  templateVariant: 'short',
  recyclePointwise: true,
  recyclePairwise: true,
  recycleReflection: true,
});

/** `spark demo --quick`: the same pipeline at toy scale (a couple of minutes). */
export const QUICK_DEMO_JOB: Readonly<Partial<JobSpec>> = Object.freeze({
  ...DEMO_JOB,
  name: 'spark-demo-quick',
  model: 'tiny',
  maxSteps: 3,
  warmupSteps: 10,
  batchSize: 8,
  groupSize: 4,
  maxNewTokens: 48,
  miniBatchSize: 32,
  microBatchSize: 16,
  evalSize: 16,
  evalInterval: 0,
});

/** Rollout worker processes the demo starts (the machine has 2 cores: one sampler, one learner). */
export const DEMO_ROLLOUT_WORKERS = 1;

/**
 * Environment variable holding a JSON object of JobSpec fields (camelCase, e.g.
 * `{"algorithm":"ALGORITHM_GRPO","maxSteps":8}`) merged over the demo spec: how docs/results.md's
 * side-by-side runs and tuning runs change the demo without editing it.
 */
export const DEMO_SPEC_ENV = 'SPARK_DEMO_SPEC';

/** Bad SPARK_DEMO_SPEC text. */
export class DemoSpecError extends Error {
  override name = 'DemoSpecError';
}

/** JobSpec's `optional` fields (absent from an empty message). */
const OPTIONAL_FIELDS = [
  'recyclePointwise',
  'recyclePairwise',
  'recycleReflection',
  'warmupJudgeFraction',
  'recycleBalanceLabels',
];

function envOverrides(env: NodeJS.ProcessEnv): Partial<JobSpec> {
  const text = env[DEMO_SPEC_ENV];
  if (text === undefined || text.trim() === '') return {};
  if (text.length > 10_000) throw new DemoSpecError(`${DEMO_SPEC_ENV}: over 10000 characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new DemoSpecError(`${DEMO_SPEC_ENV}: not JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new DemoSpecError(`${DEMO_SPEC_ENV}: must be a JSON object of JobSpec fields`);
  const known = new Set([...Object.keys(JobSpec.fromPartial({})), ...OPTIONAL_FIELDS]);
  const unknown = Object.keys(parsed).filter((k) => !known.has(k));
  if (unknown.length) throw new DemoSpecError(`${DEMO_SPEC_ENV}: unknown fields ${unknown.join(', ')}`);
  return JobSpec.fromJSON(parsed);
}

/** The demo job spec (a full JobSpec: zero fields take the coordinator's defaults), plus SPARK_DEMO_SPEC. */
export function demoJobSpec(
  options: { quick?: boolean; seed?: number; env?: NodeJS.ProcessEnv } = {},
): JobSpec {
  const base = options.quick ? QUICK_DEMO_JOB : DEMO_JOB;
  const raw = options.env ?? process.env;
  const overrides = envOverrides(raw);
  const fromEnv = raw[DEMO_SPEC_ENV] ? Object.keys(JSON.parse(raw[DEMO_SPEC_ENV]) as object) : [];
  const picked = Object.fromEntries(
    fromEnv.map((k) => [k, (overrides as Record<string, unknown>)[k]]),
  ) as Partial<JobSpec>;
  return JobSpec.fromPartial({
    ...base,
    ...picked,
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
  });
}
