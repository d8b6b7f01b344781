//! Errors and panics at the JS boundary.
//!
//! Every failure reaches JS as an `Error` whose `code` is an `ErrorCode` (`ERR_SPARK_*`) and whose message
//! says what was wrong: synchronous exports return `Result<T>` (napi-rs throws the error, taking `code` from
//! `napi::Error<ErrorCode>`'s status), asynchronous ones reject their Promise with the same kind of object
//! (`rejection`). A panic anywhere below an export — on the JS thread, on a libuv worker, or on a backend
//! thread under a worker — is caught (`guard`, `task::Work`) and becomes `ERR_SPARK_PANIC` with the panic's
//! message and source location; no panic unwinds into Node.
use crate::error::{Error, ErrorCode};
use napi::bindgen_prelude::{Env, JsError};
use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

/// What synchronous exports return: napi-rs turns `Err` into a thrown JS Error with our `code`. (Named
/// `Result` because napi-derive recognises results by that name.)
pub type Result<T> = std::result::Result<T, napi::Error<ErrorCode>>;

/// Our error as napi-rs's error (status = our code).
pub fn to_js(e: Error) -> napi::Error<ErrorCode> {
    napi::Error::new(e.code, e.message)
}

/// A napi-rs error carrying a reference to a JS Error with our `code` (napi-rs's task machinery rejects
/// Promises with `napi::Error<Status>`, whose own code would be a napi status; a referenced JS value is
/// passed through as it is).
pub fn rejection(env: &Env, e: Error) -> napi::Error {
    napi::Error::from(JsError::from(to_js(e)).into_unknown(*env))
}

/// A napi-rs failure (creating a value, queueing work) as our error.
pub fn from_napi<S: AsRef<str>>(e: napi::Error<S>) -> Error {
    Error::new(
        ErrorCode::Napi,
        format!("Node-API call failed ({}): {}", e.status.as_ref(), e.reason),
    )
}

/// Runs `f`, turning a panic into an `ERR_SPARK_PANIC` error.
pub fn catch<T>(
    during: &str,
    f: impl FnOnce() -> crate::error::Result<T>,
) -> crate::error::Result<T> {
    install_panic_hook();
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload, during)))
}

/// Runs the body of a synchronous export: `Err` and panics (→ `ERR_SPARK_PANIC`) are thrown as JS Errors.
pub fn guard<T>(during: &str, f: impl FnOnce() -> crate::error::Result<T>) -> Result<T> {
    catch(during, f).map_err(to_js)
}

// ---- panics ----
//
// The panic hook records "message at file:line" per thread, and also globally: a panic on one of the
// backend's scoped worker threads reaches our `catch_unwind` as the generic "a scoped thread panicked"
// payload, so the last recorded message is the informative one. The previous hook still runs (it prints the
// panic to stderr, which is what a developer wants to see) unless `SPARK_KERNELS_QUIET_PANICS` is set.

thread_local! {
    static LAST_PANIC_HERE: RefCell<Option<String>> = const { RefCell::new(None) };
}
static LAST_PANIC_ANYWHERE: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Installs the recording panic hook once per process (idempotent).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = payload_message(info.payload());
            let full = match info.location() {
                Some(loc) => format!("{msg} (at {}:{})", loc.file(), loc.line()),
                None => msg,
            };
            // std::thread::scope re-panics in the parent with a generic message: keep the child's.
            if !full.starts_with("a scoped thread panicked") {
                LAST_PANIC_HERE.with(|c| *c.borrow_mut() = Some(full.clone()));
                if let Ok(mut g) = LAST_PANIC_ANYWHERE.lock() {
                    *g = Some(full);
                }
            }
            if std::env::var_os("SPARK_KERNELS_QUIET_PANICS").is_none() {
                previous(info);
            }
        }));
    });
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Turns a caught panic payload into an `ERR_SPARK_PANIC` error (called right after `catch_unwind`).
pub fn panic_error(payload: Box<dyn Any + Send>, during: &str) -> Error {
    let from_payload = payload_message(payload.as_ref());
    let recorded = LAST_PANIC_HERE.with(|c| c.borrow_mut().take());
    let detail = match recorded {
        Some(r) if !from_payload.contains("scoped thread panicked") => r,
        _ => LAST_PANIC_ANYWHERE
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or(from_payload),
    };
    Error::new(
        ErrorCode::Panic,
        format!("native panic during {during}: {detail}"),
    )
}
