// The cluster contract: the names of every per-job queue and Redis key, and the JSON payloads the
// coordinator, rollout, verifier, reward-synthesis and learner services exchange. Every service imports
// these; nothing else defines a key or a queue name. See docs/architecture.md for the data flow.
export * from './types.js';
export * from './keys.js';
export * from './job-workers.js';
export * from './spec.js';
export * from './policy-client.js';
export * from './checkpoint-layout.js';
export * from './checkpoint-store.js';
export { describeIssues, parseJson } from './parse.js';
