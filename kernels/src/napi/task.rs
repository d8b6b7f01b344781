//! Asynchronous work: a closure run on a libuv worker thread through napi-rs's `Task`, settling a Promise on
//! the JS thread.
//!
//! `compute` runs the closure off the JS thread (it gets no `Env`, so it cannot touch JS values) under
//! `catch_unwind`; `resolve` runs on the JS thread and converts the output with its `ToNapiValue` (e.g. a
//! `Float32Array` wrapping the Rust `Vec` without a copy, a model handle) or rejects with our error.
use super::error::{from_napi, panic_error, rejection, to_js, Result};
use crate::error::{Error, ErrorCode};
use napi::bindgen_prelude::{Env, PromiseRaw, ToNapiValue, TypeName};
use napi::Task;
use std::panic::{catch_unwind, AssertUnwindSafe};

type Job<T> = Box<dyn FnOnce() -> crate::error::Result<T> + Send>;

/// One unit of work for the libuv pool; `name` appears in panic messages ("native panic during spark.forward").
pub struct Work<T> {
    name: &'static str,
    job: Option<Job<T>>,
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for Work<T> {
    type Output = crate::error::Result<T>;
    type JsValue = T;

    /// On a libuv worker: runs the job; a panic becomes `ERR_SPARK_PANIC`.
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let name = self.name;
        Ok(match self.job.take() {
            Some(job) => {
                catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|p| Err(panic_error(p, name)))
            }
            None => Err(Error::new(ErrorCode::Napi, format!("{name} ran twice"))),
        })
    }

    /// On the JS thread: the value, or a rejection with our error code.
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<T> {
        output.map_err(|e| rejection(&env, e))
    }
}

/// Runs `job` on a libuv worker; the returned Promise settles with its result.
pub fn spawn<'env, T, F>(env: &'env Env, name: &'static str, job: F) -> Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + TypeName + Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    let work = Work {
        name,
        job: Some(Box::new(job)),
    };
    let pending = env.spawn(work).map_err(|e| to_js(from_napi(e)))?;
    Ok(pending.promise_object())
}

/// A Promise rejected with `e` (through the pool, like every other settlement): asynchronous exports report
/// bad argument values this way, so their callers see one failure channel.
pub fn rejected<'env, T>(
    env: &'env Env,
    name: &'static str,
    e: Error,
) -> Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + TypeName + Send + 'static,
{
    spawn(env, name, move || Err(e))
}
