//! The functions exported to JS (the raw binding; `kernels/ts` wraps them in a typed API).
//!
//! Conventions: synchronous functions throw; asynchronous ones (everything that computes or does I/O) return
//! a Promise and report argument errors as a rejection too. Every error carries `code` (see `error.rs`).
use super::env::{Env, Value};
use super::error::{Error, Result};
use super::task::{define, rejected, spawn_promise};

pub fn register(env: Env, exports: Value) -> Result<()> {
    define(env, exports, "version", version)?;
    define(env, exports, "debugSum", debug_sum)?;
    define(env, exports, "debugScale", debug_scale)?;
    define(env, exports, "debugPanic", debug_panic)?;
    define(env, exports, "debugSleep", debug_sleep)?;
    super::models::register(env, exports)?;
    Ok(())
}

fn version(env: Env, _args: &[Value]) -> Result<Value> {
    env.string(env!("CARGO_PKG_VERSION"))
}

/// debugSum(Float32Array, Uint32Array) → number: exercises typed-array input on the JS thread.
fn debug_sum(env: Env, args: &[Value]) -> Result<Value> {
    let a = env.f32_vec(args[0], "a")?;
    let b = env.u32_vec(args[1], "b")?;
    let s: f64 =
        a.iter().map(|&x| x as f64).sum::<f64>() + b.iter().map(|&x| x as f64).sum::<f64>();
    env.number(s)
}

/// debugScale(Float32Array, factor) → Promise<Float32Array>: copy in, compute on a worker, copy out.
fn debug_scale(env: Env, args: &[Value]) -> Result<Value> {
    let parsed = (|| Ok((env.f32_vec(args[0], "values")?, env.f32(args[1], "factor")?)))();
    let (xs, k): (Vec<f32>, f32) = match parsed {
        Ok(p) => p,
        Err(e) => return rejected(env, &e),
    };
    spawn_promise(
        env,
        "spark.debugScale",
        move || Ok(xs.iter().map(|x| x * k).collect::<Vec<f32>>()),
        |env, out: Vec<f32>| env.f32_array(&out),
    )
}

/// debugPanic(where): panics on the JS thread ("sync"), in a worker ("async"), or in a scoped thread spawned
/// by a worker ("thread") — proves panics become JS Errors and never unwind into Node.
fn debug_panic(env: Env, args: &[Value]) -> Result<Value> {
    let mode = env.string_value(args[0], "mode")?;
    match mode.as_str() {
        "sync" => panic!("deliberate test panic (sync)"),
        "async" => spawn_promise(
            env,
            "spark.debugPanic",
            || -> Result<()> { panic!("deliberate test panic (async)") },
            |env, ()| env.undefined(),
        ),
        "thread" => spawn_promise(
            env,
            "spark.debugPanic",
            || -> Result<()> {
                std::thread::scope(|s| {
                    s.spawn(|| panic!("deliberate test panic (scoped thread)"));
                });
                Ok(())
            },
            |env, ()| env.undefined(),
        ),
        other => Err(Error::invalid(format!(
            "mode must be sync, async or thread, got {other:?}"
        ))),
    }
}

/// debugSleep(ms) → Promise<number>: blocks a worker thread for `ms` (≤ 10 s) and resolves with the worker's
/// thread id hash, so tests can check the JS thread stayed free.
fn debug_sleep(env: Env, args: &[Value]) -> Result<Value> {
    let ms = match env.usize(args[0], "ms", 10_000) {
        Ok(ms) => ms,
        Err(e) => return rejected(env, &e),
    };
    spawn_promise(
        env,
        "spark.debugSleep",
        move || {
            std::thread::sleep(std::time::Duration::from_millis(ms as u64));
            Ok(ms)
        },
        |env, ms| env.number(ms as f64),
    )
}
