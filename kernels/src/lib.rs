//! spark_kernels: the native learner and sampler behind Spark's `@spark/kernels` package.
//!
//! - `model`, `backend`: the Qwen2-style transformer and its CPU compute backend (plain Rust, no Node types).
//! - `safetensors`: defensive reader (F32/BF16/F16) and F32 writer of the safetensors format.
//! - `napi`: the Node-API boundary — raw declarations (`napi::sys`), a small safe layer, and the exported
//!   functions the TypeScript wrapper (`kernels/ts`) calls. Only this module touches Node types.
pub mod napi;
pub mod safetensors;
pub mod backend;
pub mod model;
