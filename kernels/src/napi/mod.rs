//! The Node-API boundary of `spark_kernels`, written with napi-rs (`napi`, `napi-derive`): every `#[napi]`
//! item here is exported to JS, and `napi build --dts index.d.ts` generates `kernels/index.d.ts` from them,
//! which `kernels/ts/native.check.ts` checks against the hand-written `NativeBinding` of `kernels/ts/native.ts`.
//!
//! - `error`: `ERR_SPARK_*` codes on JS Errors, panics caught and reported (never unwinding into Node);
//! - `task`: work on libuv worker threads settling Promises;
//! - `handle`: model handles — the registry of live models, the per-model busy guard, freeing;
//! - `collective`: the collective handle (Gloo) and the model operations over it;
//! - `convert`: the JS object shapes and their conversion to the model's Rust types (value checks);
//! - `ops`: the exported model operations; `debug`: `version` and the functions that test this layer.
//!
//! Only this module touches Node types; below it everything is plain Rust (`crate::model`,
//! `crate::checkpoint`, `crate::backend`).
pub mod collective;
pub mod convert;
pub mod debug;
pub mod error;
pub mod handle;
pub mod ops;
pub mod task;
