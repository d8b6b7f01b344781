// @spark/method/recycling: SPARK's recycling of policy-phase rollouts into judge and reflection prompts
// (docs/method.md "Recycling"), as pure functions driven by a seeded Rng.
export * from './recycle.js';
export { Rng } from '../tasks/random.js';
