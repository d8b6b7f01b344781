//! The compute backend boundary of the native learner.
//!
//! The model (`crate::model`) is written against the operations below and nothing else: the GEMM
//! (`gemm::sgemm`, row-major with optional transposes) and the fused kernels of `ops` (RMSNorm, RoPE, causal
//! GQA attention and its KV-cache variant, SwiGLU, log-softmax, AdamW, reductions), each on flat f32 buffers
//! with the shapes stated in its doc comment. The CPU backend implements them with std threads
//! (`threads`), OpenBLAS loaded at run time (`blas`), a built-in AVX2/FMA (and AVX-512) GEMM (`gemm_avx2`) and a scalar
//! fallback. A CUDA backend implements the same list over device buffers; the TypeScript API does not change.

pub mod blas;
pub mod gemm;
pub mod gemm_avx2;
pub mod gemv;
pub mod ops;
pub mod threads;

pub use gemm::{sgemm, GemmPath};
pub use threads::num_threads;

/// A one-line description of the backend in use (for logs and benchmarks).
pub fn describe() -> String {
    let p = gemm::path();
    let lib = match blas::blas() {
        Some(b) => b.library.clone(),
        None => "none".to_string(),
    };
    format!(
        "cpu: {} threads, gemm={} (blas library: {}, avx2+fma: {}, built-in tile: {})",
        num_threads(),
        p.name(),
        lib,
        gemm_avx2::available(),
        gemm_avx2::isa().name()
    )
}
