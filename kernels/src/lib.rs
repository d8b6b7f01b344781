//! spark_kernels: the native learner and sampler behind Spark's `@spark/kernels` package.
//!
//! - `model`, `backend`: the Qwen2-style transformer and its CPU compute backend (plain Rust, no Node types).
//! - `checkpoint`, `safetensors`: checkpoint I/O — weights and optimizer state as safetensors files, read
//!   memory-mapped through the `safetensors` crate behind our own limits.
//! - `collective`: data-parallel collectives (Gloo over TCP, rendezvous in Redis) behind a C++ shim.
//! - `error`: the crate's error type (a stable code + message).
//! - `napi`: the Node-API boundary (napi-rs) — the exported functions the TypeScript wrapper (`kernels/ts`)
//!   calls. Only this module touches Node types.
pub mod backend;
pub mod checkpoint;
pub mod collective;
pub mod error;
pub mod model;
pub mod napi;
pub mod safetensors;

#[cfg(test)]
mod hostile_tests;
