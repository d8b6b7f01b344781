//! The Node-API boundary of `spark_kernels`.
//!
//! - `sys`: the raw C declarations (the only `extern "C"` block for Node), checked against Node's headers by
//!   `header_check`.
//! - `env`, `error`, `task`: the safe layer — value conversions with copy semantics, error/panic mapping,
//!   exported-function trampolines and asynchronous work settled through Promises.
//! - `exports`: registration and the small debug functions that test the layer itself; `models`: model
//!   handles and every model operation (async heavy work, checkpoints).
//!
//! Registration: Node finds the exported symbol `napi_register_module_v1` (the `NAPI_MODULE_INIT` form) and
//! `node_api_module_get_api_version_v1`, which reports the Node-API version this addon targets.
pub mod env;
pub mod error;
pub mod exports;
pub mod models;
pub mod sys;
pub mod task;

#[cfg(test)]
mod header_check;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The Node-API version the addon is written against (`NAPI_VERSION` 8: Node ≥ 12.22 / 14.17 / 15.12).
#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    sys::NAPI_VERSION
}

/// Module initialiser: fills `exports` with the binding's functions. Errors (and panics) become a thrown JS
/// Error, so `require()` of the addon fails cleanly instead of crashing.
///
/// # Safety
/// Called by Node on the JS thread with a valid `env` and `exports` object.
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(
    env: sys::napi_env,
    exports: sys::napi_value,
) -> sys::napi_value {
    error::install_panic_hook();
    let e = env::Env(env);
    match catch_unwind(AssertUnwindSafe(|| exports::register(e, exports))) {
        Ok(Ok(())) => exports,
        Ok(Err(err)) => {
            e.throw(&err);
            std::ptr::null_mut()
        }
        Err(payload) => {
            e.throw(&error::panic_error(payload, "module registration"));
            std::ptr::null_mut()
        }
    }
}
