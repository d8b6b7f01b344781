// @spark/method/evaluation: evaluation shared by `spark eval` / `score` / `infer` and the coordinator's
// in-training evaluation — problem evaluation with test-time self-reflection over any batched text
// generator, summary semantics (per-dataset accuracy, missing answers, unweighted mean), results-file
// parsing, and the checkpoint-independent reward benchmark items. Nothing here loads a model or a
// verifier: callers pass a `generate` function and a scorer.
export * from './summary.js';
export * from './problems.js';
export * from './judge.js';
export * from './results-file.js';
export * from './verdicts.js';
export * from './judge-diagnostics.js';
export * from './warmup.js';
