// @spark/method/tasks: the embedded default dataset — seeded synthetic verifiable math problems with
// disjoint train/test splits and worked solutions — and the seeded PRNG shared by tasks and recycling.
export * from './random.js';
export * from './families.js';
export * from './dataset.js';
export * from './prompt.js';
