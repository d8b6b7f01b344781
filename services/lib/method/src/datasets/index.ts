// @spark/method/datasets: the common dataset record, loaders of the formats Spark reads (SPARK training,
// evaluation, GSM8K, MATH, plain JSONL) with bounded streaming and per-line errors, writers of the SPARK
// and evaluation formats, a minimal `\boxed{}` extractor, and the synthetic default as records.
export * from './formats.js';
export * from './lines.js';
export * from './loader.js';
export * from './boxed.js';
export * from './synthetic.js';
