// @spark/method/recycling: SPARK's recycling of policy-phase rollouts into judge and reflection prompts
// (spark-method.md §2), as pure functions driven by a seeded Rng.
export * from './recycle.js';
export { Rng } from '../tasks/random.js';
