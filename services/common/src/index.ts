// @spark/common: the library every Spark service uses. Import from the subpath of the part you need
// (`@spark/common/config`, `@spark/common/grpc`, …); this root re-exports the errors only.
export * from './errors/index.js';
