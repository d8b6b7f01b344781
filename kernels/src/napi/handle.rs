//! Model handles: the registry of live models, the per-model busy guard, and the JS handle object.
//!
//! A handle is an instance of the napi-rs class `NativeModel` (JS cannot construct one: it has no
//! constructor; napi-rs checks an argument really is one of ours before unwrapping it) holding an
//! `Arc<ModelSlot>`. Several models may live in one process; each slot owns its `Model`.
//!
//! Concurrency: one operation at a time per model. Every call first claims the slot's `busy` flag on the JS
//! thread; if another operation is still running the call is rejected with `ERR_SPARK_MODEL_BUSY` (never
//! blocks the JS thread or a libuv worker). The TypeScript wrapper queues calls per model, so its users never
//! see that error. The claim is released when the worker's computation ends (also after a panic).
//!
//! Closing: `free` marks the slot closed; the model's memory is released at once, or, if an operation is
//! running, when that operation ends. Every later call fails with `ERR_SPARK_MODEL_CLOSED`. A model whose
//! operation panicked is poisoned: later calls fail with a message saying so (free it and reload). When JS
//! garbage-collects a handle, napi-rs drops the `NativeModel` and with it the slot's last reference.
use crate::error::{Error, ErrorCode, Result};
use crate::model::{Model, ModelConfig, ParamInfo};
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Models currently holding memory (created and neither freed nor garbage-collected): `liveModels()`.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// The number of models holding native memory in this process.
pub fn live_models() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

/// A model owned by a slot; counts itself in LIVE while it exists.
struct Live(Model);

impl Live {
    fn new(m: Model) -> Live {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Live(m)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One model and the facts about it that never change (readable while it computes, and after `free`).
pub struct ModelSlot {
    pub id: u64,
    pub frozen: bool,
    pub cfg: ModelConfig,
    pub table: Vec<ParamInfo>,
    pub num_params: usize,
    busy: AtomicBool,
    closed: AtomicBool,
    model: Mutex<Option<Live>>,
}

impl ModelSlot {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Err (`ERR_SPARK_MODEL_FROZEN`) for a frozen reference copy.
    pub fn trainable(&self) -> Result<()> {
        if self.frozen {
            return Err(Error::new(
                ErrorCode::Frozen,
                format!(
                    "model #{} is a frozen reference copy: it cannot train or hold gradients",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Closes the slot; frees the model now unless an operation is running (its claim frees it at the end).
    /// Returns false when the slot was already closed.
    pub fn free(&self) -> bool {
        let was_open = !self.closed.swap(true, Ordering::AcqRel);
        if was_open
            && self
                .busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            drop(
                self.model
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
            self.busy.store(false, Ordering::Release);
        }
        was_open
    }
}

/// The JS handle of a model (`NativeModelHandle` in `kernels/ts/native.ts`).
#[napi]
pub struct NativeModel {
    slot: Arc<ModelSlot>,
}

#[napi]
impl NativeModel {
    /// The process-unique model id (also in `modelInfo`).
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.slot.id as f64
    }
}

impl NativeModel {
    /// A handle owning `model` (counted in `liveModels()` until freed or collected).
    pub fn new(model: Model) -> NativeModel {
        let slot = ModelSlot {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            frozen: model.is_frozen(),
            cfg: model.config().clone(),
            table: model.param_table().to_vec(),
            num_params: model.num_params(),
            busy: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            model: Mutex::new(Some(Live::new(model))),
        };
        NativeModel {
            slot: Arc::new(slot),
        }
    }

    pub fn slot(&self) -> &Arc<ModelSlot> {
        &self.slot
    }
}

/// The claim on a slot for one operation; dropping it (on the worker, also while unwinding) releases the
/// claim, and frees the model if the slot was closed meanwhile.
pub struct Claim(Arc<ModelSlot>);

impl Claim {
    /// Claims `slot` for one operation (on the JS thread; never blocks).
    pub fn acquire(slot: &Arc<ModelSlot>) -> Result<Claim> {
        if slot.is_closed() {
            return Err(Error::new(
                ErrorCode::ModelClosed,
                format!("model #{} was freed", slot.id),
            ));
        }
        if slot
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::new(
                ErrorCode::ModelBusy,
                format!(
                    "model #{} is busy with another operation (one at a time per model)",
                    slot.id
                ),
            ));
        }
        Ok(Claim(slot.clone()))
    }

    /// Runs `f` with the model (on the calling thread; used on workers).
    pub fn with<T>(&self, f: impl FnOnce(&mut Model) -> Result<T>) -> Result<T> {
        let mut guard = self.0.model.lock().map_err(|_| {
            Error::model(format!(
                "model #{} is unusable: a previous operation panicked mid-update; free it and load a checkpoint",
                self.0.id
            ))
        })?;
        match guard.as_mut() {
            Some(m) => f(&mut m.0),
            None => Err(Error::new(
                ErrorCode::ModelClosed,
                format!("model #{} was freed", self.0.id),
            )),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0.is_closed() {
            // A poisoned model is freed too: nothing will use it again.
            drop(
                self.0
                    .model
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
        self.0.busy.store(false, Ordering::Release);
    }
}
