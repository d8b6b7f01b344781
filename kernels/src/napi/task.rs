//! Entry points and asynchronous work.
//!
//! - `trampoline`: the one C callback every exported JS function goes through. It reads the arguments, runs
//!   the Rust function under `catch_unwind`, and turns `Err` or a panic into a thrown JS Error; no panic ever
//!   unwinds into Node.
//! - `spawn_promise`: runs `compute` on a libuv worker thread (napi_create_async_work; the closure gets no
//!   `Env` and so cannot touch JS), then on the JS thread converts its output with `finish` and resolves the
//!   Promise — or rejects it with a JS Error for an `Err`, a panic in either closure, or a failed conversion.
use super::env::{Env, Value};
use super::error::{panic_error, Error, ErrorCode, Result};
use super::sys;
use std::os::raw::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

/// Signature of an exported function: the JS arguments (missing ones are `undefined`) → a JS value.
pub type ExportFn = fn(Env, &[Value]) -> Result<Value>;

/// Most arguments any export takes; extra JS arguments are ignored like in plain JS.
const MAX_ARGS: usize = 8;

/// The C callback behind every exported function; `data` carries the `ExportFn` pointer.
pub unsafe extern "C" fn trampoline(env: sys::napi_env, info: sys::napi_callback_info) -> Value {
    let e = Env(env);
    let mut argc = MAX_ARGS;
    let mut argv = [ptr::null_mut(); MAX_ARGS];
    let mut data: *mut c_void = ptr::null_mut();
    let st = sys::napi_get_cb_info(
        env,
        info,
        &mut argc,
        argv.as_mut_ptr(),
        ptr::null_mut(),
        &mut data,
    );
    if let Err(err) = e.check(st, "get_cb_info") {
        e.throw(&err);
        return ptr::null_mut();
    }
    if data.is_null() {
        e.throw(&Error::new(
            ErrorCode::Napi,
            "export called without its function pointer",
        ));
        return ptr::null_mut();
    }
    // SAFETY: `data` was set from an `ExportFn` in `define` and function pointers fit in a data pointer.
    let f: ExportFn = std::mem::transmute::<*mut c_void, ExportFn>(data);
    let n = argc.min(MAX_ARGS);
    let undefined = match e.undefined() {
        Ok(u) => u,
        Err(err) => {
            e.throw(&err);
            return ptr::null_mut();
        }
    };
    let mut args = [undefined; MAX_ARGS];
    args[..n].copy_from_slice(&argv[..n]);
    match catch_unwind(AssertUnwindSafe(|| f(e, &args))) {
        Ok(Ok(v)) => v,
        Ok(Err(err)) => {
            e.throw(&err);
            ptr::null_mut()
        }
        Err(payload) => {
            e.throw(&panic_error(payload, "a native call"));
            ptr::null_mut()
        }
    }
}

/// Defines `exports[name] = f` (a JS function running `f` through `trampoline`).
pub fn define(env: Env, exports: Value, name: &str, f: ExportFn) -> Result<()> {
    let mut func = ptr::null_mut();
    let st = unsafe {
        sys::napi_create_function(
            env.0,
            name.as_ptr().cast(),
            name.len(),
            Some(trampoline),
            f as *mut c_void,
            &mut func,
        )
    };
    env.check(st, "create_function")?;
    env.set(exports, name, func)
}

type Compute<T> = Box<dyn FnOnce() -> Result<T> + Send>;
type Finish<T> = Box<dyn FnOnce(Env, T) -> Result<Value> + Send>;

struct Work<T: Send + 'static> {
    name: &'static str,
    compute: Option<Compute<T>>,
    result: Option<Result<T>>,
    finish: Option<Finish<T>>,
    deferred: sys::napi_deferred,
    work: sys::napi_async_work,
}

/// Runs `compute` off the JS thread and returns a Promise settled on the JS thread with `finish(output)`.
pub fn spawn_promise<T, C, F>(env: Env, name: &'static str, compute: C, finish: F) -> Result<Value>
where
    T: Send + 'static,
    C: FnOnce() -> Result<T> + Send + 'static,
    F: FnOnce(Env, T) -> Result<Value> + Send + 'static,
{
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    env.check(
        unsafe { sys::napi_create_promise(env.0, &mut deferred, &mut promise) },
        "create_promise",
    )?;
    let work = Box::new(Work::<T> {
        name,
        compute: Some(Box::new(compute)),
        result: None,
        finish: Some(Box::new(finish)),
        deferred,
        work: ptr::null_mut(),
    });
    let raw = Box::into_raw(work);
    let resource_name = env.string(name)?;
    let mut handle = ptr::null_mut();
    let st = unsafe {
        sys::napi_create_async_work(
            env.0,
            ptr::null_mut(),
            resource_name,
            Some(execute::<T>),
            Some(complete::<T>),
            raw.cast(),
            &mut handle,
        )
    };
    if let Err(e) = env.check(st, "create_async_work") {
        // SAFETY: not handed to Node; we still own it. Reject so the promise does not hang.
        let w = unsafe { Box::from_raw(raw) };
        settle(env, w.deferred, Err(e));
        return Ok(promise);
    }
    unsafe { (*raw).work = handle };
    let st = unsafe { sys::napi_queue_async_work(env.0, handle) };
    if let Err(e) = env.check(st, "queue_async_work") {
        let w = unsafe { Box::from_raw(raw) };
        unsafe { sys::napi_delete_async_work(env.0, handle) };
        settle(env, w.deferred, Err(e));
    }
    Ok(promise)
}

/// A promise already rejected with `e` (async exports report argument errors this way, so callers see
/// one failure channel).
pub fn rejected(env: Env, e: &Error) -> Result<Value> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    env.check(
        unsafe { sys::napi_create_promise(env.0, &mut deferred, &mut promise) },
        "create_promise",
    )?;
    settle(env, deferred, Err(e.clone()));
    Ok(promise)
}

/// Runs on a libuv worker thread: no JS access, only the boxed closure.
unsafe extern "C" fn execute<T: Send + 'static>(_env: sys::napi_env, data: *mut c_void) {
    // SAFETY: `data` is the Work box; Node runs execute before complete and never concurrently with it.
    let w = &mut *(data as *mut Work<T>);
    let name = w.name;
    if let Some(compute) = w.compute.take() {
        w.result = Some(match catch_unwind(AssertUnwindSafe(compute)) {
            Ok(r) => r,
            Err(payload) => Err(panic_error(payload, name)),
        });
    }
}

/// Runs on the JS thread (inside a handle scope Node opens): settle the promise, free everything.
unsafe extern "C" fn complete<T: Send + 'static>(
    env: sys::napi_env,
    status: sys::napi_status,
    data: *mut c_void,
) {
    let e = Env(env);
    // SAFETY: reclaim the box leaked in spawn_promise; Node calls complete exactly once.
    let mut w = Box::from_raw(data as *mut Work<T>);
    let outcome: Result<Value> = if status == sys::napi_cancelled {
        Err(Error::new(
            ErrorCode::Napi,
            format!("{} was cancelled", w.name),
        ))
    } else {
        match w.result.take() {
            None => Err(Error::new(
                ErrorCode::Napi,
                format!("{} finished without a result", w.name),
            )),
            Some(Err(err)) => Err(err),
            Some(Ok(out)) => {
                let finish = w.finish.take();
                match catch_unwind(AssertUnwindSafe(move || match finish {
                    Some(f) => f(e, out),
                    None => Err(Error::new(ErrorCode::Napi, "finish closure missing")),
                })) {
                    Ok(r) => r,
                    Err(payload) => Err(panic_error(payload, w.name)),
                }
            }
        }
    };
    settle(e, w.deferred, outcome);
    sys::napi_delete_async_work(env, w.work);
}

/// Resolves or rejects `deferred`. A conversion that left a JS exception pending rejects with that exception.
fn settle(env: Env, deferred: sys::napi_deferred, outcome: Result<Value>) {
    unsafe {
        match outcome {
            Ok(v) => {
                sys::napi_resolve_deferred(env.0, deferred, v);
            }
            Err(err) => {
                let value = match env.take_exception() {
                    Some(ex) => Ok(ex),
                    None => env.error_value(&err),
                };
                match value {
                    Ok(v) => {
                        sys::napi_reject_deferred(env.0, deferred, v);
                    }
                    Err(_) => {
                        // Could not even build an Error object: reject with undefined rather than hang.
                        let mut u = ptr::null_mut();
                        sys::napi_get_undefined(env.0, &mut u);
                        sys::napi_reject_deferred(env.0, deferred, u);
                    }
                }
            }
        }
    }
}
