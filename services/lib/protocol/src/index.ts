// The generated spark.v1 protocol (ts-proto, grpc-js services): messages, enums, service definitions and
// clients. Regenerate with `pnpm proto:gen`; never edit src/gen by hand.
export * from './gen/spark/v1/sample.js';
export * from './gen/spark/v1/job.js';
export * from './gen/spark/v1/policy.js';
