//! Errors at the Node-API boundary: every Rust failure becomes an `Error` with a stable `code` (the TS wrapper
//! re-types it by code into a named error class) and a message; a caught panic becomes the same, with code
//! `ERR_SPARK_PANIC` and the panic message (and location, when the panic hook saw it).
use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, Once};

/// The error kinds the binding reports; `code()` is what JS sees as `err.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad arguments: wrong JS type, out-of-range number, token id >= vocab, NaN, shape mismatch, …
    InvalidInput,
    /// The model handle was closed (`free`) before this call.
    ModelClosed,
    /// Another asynchronous operation on the same model is still running (the TS wrapper queues calls per
    /// model, so only raw binding users see this).
    ModelBusy,
    /// A training/mutation call on a frozen reference copy.
    Frozen,
    /// A Rust panic was caught at the boundary.
    Panic,
    /// File system failure (open, read, write).
    Io,
    /// A malformed or inconsistent file (safetensors header, tensor table).
    Format,
    /// An error reported by the model code itself (its `Err(String)`).
    Model,
    /// A Node-API call failed (should not happen; reported rather than ignored).
    Napi,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "ERR_SPARK_INVALID_INPUT",
            ErrorCode::ModelClosed => "ERR_SPARK_MODEL_CLOSED",
            ErrorCode::ModelBusy => "ERR_SPARK_MODEL_BUSY",
            ErrorCode::Frozen => "ERR_SPARK_MODEL_FROZEN",
            ErrorCode::Panic => "ERR_SPARK_PANIC",
            ErrorCode::Io => "ERR_SPARK_IO",
            ErrorCode::Format => "ERR_SPARK_FORMAT",
            ErrorCode::Model => "ERR_SPARK_MODEL",
            ErrorCode::Napi => "ERR_SPARK_NAPI",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidInput, message)
    }
    pub fn model(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Model, message)
    }
    pub fn format(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Format, message)
    }
    pub fn io(what: &str, e: std::io::Error) -> Self {
        Error::new(ErrorCode::Io, format!("{what}: {e}"))
    }
    /// Prefixes the message with context ("loading weights: …").
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.code())
    }
}

impl std::error::Error for Error {}

impl From<crate::safetensors::SafetensorsError> for Error {
    fn from(e: crate::safetensors::SafetensorsError) -> Self {
        match e {
            crate::safetensors::SafetensorsError::Io(m) => Error::new(ErrorCode::Io, m),
            crate::safetensors::SafetensorsError::Format(m) => Error::format(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

// ---- panics ----
//
// The panic hook records "message at file:line" per thread, and also globally: a panic on one of the
// backend's scoped worker threads reaches our `catch_unwind` as the generic "a scoped thread panicked"
// payload, so the last recorded message is the informative one. The previous hook still runs (it prints the
// panic to stderr, which is what a developer wants to see).

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
