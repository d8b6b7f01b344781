// @spark/runtime: the service runtime every Spark process uses. Import from the subpath of the part you need
// (`@spark/runtime/config`, `@spark/runtime/grpc`, …); this root re-exports the errors only.
export * from './errors/index.js';
