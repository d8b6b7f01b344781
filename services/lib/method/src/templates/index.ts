// @spark/method/templates: SPARK's prompt templates (recycling judge/reflection sets, the answer-format
// instruction, test-time self-reflection prompts) and their one-pass renderer.
export * from './render.js';
export * from './sets.js';
export * from './prompts.js';
export * from './option-order.js';
