//! The crate's error type: a stable machine-readable `ErrorCode` plus a message. Plain Rust (checkpoint I/O and
//! the binding both use it); `crate::napi::error` turns it into a JS `Error` whose `code` is `ErrorCode::code()`
//! (the TypeScript wrapper re-types errors by that code, `kernels/ts/errors.ts`).
use std::fmt;

/// The error kinds the crate reports; `code()` is what JS sees as `err.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad arguments: out-of-range number, token id >= vocab, NaN, shape mismatch, …
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
    /// A collective (or its rendezvous) did not complete within the group's timeout.
    CollectiveTimeout,
    /// A peer of the group went away mid-operation (connection closed or reset).
    CollectivePeerLost,
    /// The rendezvous store (Redis) failed: unreachable, AUTH refused, …
    CollectiveStore,
    /// Any other failure inside the collective library.
    CollectiveFailed,
    /// The collective was closed before or during this call.
    CollectiveClosed,
    /// An earlier collective on this group failed; the group must be re-formed under a new prefix.
    CollectiveBroken,
    /// Another operation on the same collective is still running (the TS wrapper queues calls instead).
    CollectiveBusy,
    /// A `cuda:N` device was asked for and cannot be used: the driver, NVRTC or cuBLASLt missing, no device N,
    /// a GPU older than sm_80 (the message names which), or the CUDA model not wired in this build.
    CudaUnavailable,
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
            ErrorCode::CollectiveTimeout => "COLLECTIVE_TIMEOUT",
            ErrorCode::CollectivePeerLost => "COLLECTIVE_PEER_LOST",
            ErrorCode::CollectiveStore => "COLLECTIVE_STORE",
            ErrorCode::CollectiveFailed => "COLLECTIVE_FAILED",
            ErrorCode::CollectiveClosed => "COLLECTIVE_CLOSED",
            ErrorCode::CollectiveBroken => "COLLECTIVE_BROKEN",
            ErrorCode::CollectiveBusy => "COLLECTIVE_BUSY",
            ErrorCode::CudaUnavailable => "ERR_SPARK_CUDA_UNAVAILABLE",
        }
    }
}

/// napi-rs builds a JS Error's `code` from its status's `as_ref()`, so `napi::Error<ErrorCode>` carries ours.
impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.code()
    }
}

#[derive(Clone, Debug, PartialEq)]
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
    pub fn io(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Io, message)
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

pub type Result<T> = std::result::Result<T, Error>;
