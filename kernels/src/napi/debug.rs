//! `version` and the small debug functions that test the boundary itself through the real addon
//! (`kernels/ts/napi.test.ts`): typed arrays in and out, work off the JS thread, panics on the JS thread, on a
//! libuv worker and on a thread spawned by a worker.
use super::convert::{self, f32_of};
use super::error::{catch, guard, Result};
use super::task::{rejected, spawn};
use crate::error::Error;
use napi::bindgen_prelude::{Env, Float32Array, PromiseRaw, Uint32Array};
use napi_derive::napi;

/// The crate version.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// What computes this process's numbers on the CPU: the GEMM path, the BLAS library and its kernel set,
/// and the thread count. Runs of one seed are bit-identical only where all four agree.
#[napi(object)]
pub struct NativeBackendInfo {
    /// "blas", "builtin" or "scalar" (SPARK_GEMM, else the first available).
    pub gemm: String,
    pub blas_library: Option<String>,
    /// OpenBLAS's kernel set for this CPU ("Haswell", "SkylakeX", "Zen", …).
    pub blas_core: Option<String>,
    pub threads: u32,
}

#[napi]
pub fn backend_info() -> NativeBackendInfo {
    use crate::backend::{blas, gemm, threads};
    let lib = blas::blas();
    NativeBackendInfo {
        gemm: gemm::path().name().to_string(),
        blas_library: lib.map(|b| b.library.clone()),
        blas_core: lib.and_then(|b| b.core.clone()),
        threads: threads::max_threads() as u32,
    }
}

/// The parallel mode sampling uses on this machine for a model of `num_params` parameters: "groups" or
/// "split" (`model::sample::splits_columns`: SPARK_SAMPLE_MODE, else the last-level-cache rule).
#[napi]
pub fn sample_mode_for(num_params: f64) -> Result<String> {
    guard("sampleModeFor", || {
        if !(num_params.is_finite() && num_params >= 0.0 && num_params.fract() == 0.0) {
            return Err(Error::invalid(format!(
                "sampleModeFor: numParams must be a non-negative integer, got {num_params}"
            )));
        }
        let split = crate::model::sample::splits_columns(num_params as usize);
        Ok(if split { "split" } else { "groups" }.to_string())
    })
}

/// Σa + Σb, read on the JS thread straight from the typed arrays' memory (no copy).
#[napi]
pub fn debug_sum(a: Float32Array, b: Uint32Array) -> Result<f64> {
    guard("debugSum", || {
        Ok(a.iter().map(|&x| x as f64).sum::<f64>() + b.iter().map(|&x| x as f64).sum::<f64>())
    })
}

/// values · factor, computed on a worker from a copy taken at call time.
#[napi]
pub fn debug_scale<'env>(
    env: &'env Env,
    values: Float32Array,
    factor: f64,
) -> Result<PromiseRaw<'env, Float32Array>> {
    const NAME: &str = "spark.debugScale";
    match catch(NAME, || {
        Ok((
            convert::f32_vec(&values, "values")?,
            f32_of(factor, "factor")?,
        ))
    }) {
        Ok((xs, k)) => spawn(env, NAME, move || {
            Ok(Float32Array::new(xs.iter().map(|x| x * k).collect()))
        }),
        Err(e) => rejected(env, NAME, e),
    }
}

/// Panics on the JS thread ("sync"), on a worker ("async"), or on a scoped thread spawned by a worker
/// ("thread"): each must become a JS Error with code ERR_SPARK_PANIC, never unwind into Node.
#[napi]
pub fn debug_panic<'env>(env: &'env Env, mode: String) -> Result<PromiseRaw<'env, ()>> {
    const NAME: &str = "spark.debugPanic";
    match mode.as_str() {
        "sync" => guard(NAME, || panic!("deliberate test panic (sync)")),
        "async" => spawn(env, NAME, || -> crate::error::Result<()> {
            panic!("deliberate test panic (async)")
        }),
        "thread" => spawn(env, NAME, || {
            std::thread::scope(|s| {
                s.spawn(|| panic!("deliberate test panic (scoped thread)"));
            });
            Ok(())
        }),
        other => guard(NAME, || {
            Err(Error::invalid(format!(
                "mode must be sync, async or thread, got {other:?}"
            )))
        }),
    }
}

/// Blocks a worker for `ms` (≤ 10 s) and resolves with `ms`: the JS thread must stay free meanwhile.
#[napi]
pub fn debug_sleep<'env>(env: &'env Env, ms: f64) -> Result<PromiseRaw<'env, f64>> {
    const NAME: &str = "spark.debugSleep";
    match catch(NAME, || convert::count(ms, "ms", 10_000)) {
        Ok(ms) => spawn(env, NAME, move || {
            std::thread::sleep(std::time::Duration::from_millis(ms as u64));
            Ok(ms as f64)
        }),
        Err(e) => rejected(env, NAME, e),
    }
}
