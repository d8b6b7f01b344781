//! The collective layer at the JS boundary: the `NativeCollective` handle and its operations, plus the model
//! operations that use one (`allreduceGrads`, `applyOptimizerSharded`, the optimizer-state movers).
//!
//! A handle owns one `Collective` in a slot like a model's (`handle.rs`): one operation at a time (a second
//! overlapping call is rejected with COLLECTIVE_BUSY; the TypeScript wrapper queues instead), `close` frees
//! it at once or when the running operation ends (that operation then rejects with COLLECTIVE_CLOSED). The
//! first failure of a collective (timeout, lost peer, store or library error) marks the slot broken: later
//! calls reject at once with COLLECTIVE_BROKEN, naming the first failure. Collectives block a libuv worker
//! for at most the group's timeout.
use super::convert::{self, NativeAdamW};
use super::error::{catch, guard, Result};
use super::handle::{Claim, NativeModel};
use super::task::{rejected, spawn};
use crate::collective::{Collective, ConnectOptions, MAX_BROADCAST_BYTES};
use crate::error::{Error, ErrorCode};
use crate::model::dp::OptimizerShard;
use napi::bindgen_prelude::{
    Env, Float32Array, Float64Array, PromiseRaw, ToNapiValue, TypeName, Uint8Array,
};
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

struct CollSlot {
    rank: usize,
    size: usize,
    busy: AtomicBool,
    closed: AtomicBool,
    broken: Mutex<Option<Error>>,
    coll: Mutex<Option<Collective>>,
}

impl CollSlot {
    fn close(&self) -> bool {
        let was_open = !self.closed.swap(true, Ordering::AcqRel);
        if was_open
            && self
                .busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            drop(
                self.coll
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
            self.busy.store(false, Ordering::Release);
        }
        was_open
    }
}

/// The JS handle of one rank's membership of a group.
#[napi]
pub struct NativeCollective {
    slot: Arc<CollSlot>,
}

#[napi]
impl NativeCollective {
    #[napi(getter)]
    pub fn rank(&self) -> f64 {
        self.slot.rank as f64
    }
    #[napi(getter)]
    pub fn world_size(&self) -> f64 {
        self.slot.size as f64
    }
}

/// The claim on a collective for one operation.
struct CollClaim(Arc<CollSlot>);

impl CollClaim {
    fn acquire(slot: &Arc<CollSlot>) -> crate::error::Result<CollClaim> {
        if slot.closed.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorCode::CollectiveClosed,
                "the collective was closed",
            ));
        }
        if let Some(e) = slot
            .broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Err(Error::new(
                ErrorCode::CollectiveBroken,
                format!(
                    "the collective is broken by an earlier failure ({}: {}); form a new group",
                    e.code.code(),
                    e.message
                ),
            ));
        }
        if slot
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::new(
                ErrorCode::CollectiveBusy,
                "the collective is busy with another operation (one at a time)",
            ));
        }
        Ok(CollClaim(slot.clone()))
    }

    /// Runs `f` with the collective; a collective failure marks the slot broken; a close meanwhile turns the
    /// outcome into COLLECTIVE_CLOSED.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Collective) -> crate::error::Result<T>,
    ) -> crate::error::Result<T> {
        let mut guard = self.0.coll.lock().unwrap_or_else(PoisonError::into_inner);
        let out = match guard.as_mut() {
            Some(c) => f(c),
            None => Err(Error::new(
                ErrorCode::CollectiveClosed,
                "the collective was closed",
            )),
        };
        drop(guard);
        if let Err(e) = &out {
            if matches!(
                e.code,
                ErrorCode::CollectiveTimeout
                    | ErrorCode::CollectivePeerLost
                    | ErrorCode::CollectiveStore
                    | ErrorCode::CollectiveFailed
                    | ErrorCode::Panic
            ) {
                let mut b = self.0.broken.lock().unwrap_or_else(PoisonError::into_inner);
                if b.is_none() {
                    *b = Some(e.clone());
                }
            }
        }
        if self.0.closed.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorCode::CollectiveClosed,
                "the collective was closed during the operation",
            ));
        }
        out
    }
}

impl Drop for CollClaim {
    fn drop(&mut self) {
        if self.0.closed.load(Ordering::Acquire) {
            drop(
                self.0
                    .coll
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Rendezvous options (the TypeScript wrapper parses the Redis URL).
#[napi(object, object_to_js = false)]
pub struct NativeCollectiveOptions {
    pub redis_host: String,
    pub redis_port: f64,
    pub redis_user: String,
    pub redis_password: String,
    pub redis_db: f64,
    pub prefix: String,
    pub rank: f64,
    pub world_size: f64,
    pub timeout_ms: f64,
    pub hostname: String,
}

fn connect_options(o: NativeCollectiveOptions) -> crate::error::Result<ConnectOptions> {
    Ok(ConnectOptions {
        redis_port: convert::count(o.redis_port, "redisPort", 65535)? as u16,
        redis_db: convert::count(o.redis_db, "redisDb", 1 << 20)? as u32,
        rank: convert::count(o.rank, "rank", 1 << 20)?,
        world_size: convert::count(o.world_size, "worldSize", 1 << 20)?,
        timeout_ms: convert::u53(o.timeout_ms, "timeoutMs")?,
        redis_host: o.redis_host,
        redis_user: o.redis_user,
        redis_password: o.redis_password,
        prefix: o.prefix,
        hostname: o.hostname,
    })
}

/// Joins a group (on a worker; resolves once every rank has connected).
#[napi]
pub fn collective_connect<'env>(
    env: &'env Env,
    options: NativeCollectiveOptions,
) -> Result<PromiseRaw<'env, NativeCollective>> {
    const NAME: &str = "spark.collectiveConnect";
    match catch(NAME, || connect_options(options)) {
        Ok(o) => spawn(env, NAME, move || {
            let c = Collective::connect(&o)?;
            let slot = CollSlot {
                rank: c.rank(),
                size: c.size(),
                busy: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                broken: Mutex::new(None),
                coll: Mutex::new(Some(c)),
            };
            Ok(NativeCollective {
                slot: Arc::new(slot),
            })
        }),
        Err(e) => rejected(env, NAME, e),
    }
}

/// Closes the collective (idempotent; returns false when already closed).
#[napi]
pub fn collective_close(h: &NativeCollective) -> Result<bool> {
    guard("collectiveClose", || Ok(h.slot.close()))
}

fn coll_op<'env, A, T>(
    env: &'env Env,
    h: &NativeCollective,
    name: &'static str,
    parse: impl FnOnce() -> crate::error::Result<A>,
    run: impl FnOnce(&mut Collective, A) -> crate::error::Result<T> + Send + 'static,
) -> Result<PromiseRaw<'env, T>>
where
    A: Send + 'static,
    T: ToNapiValue + TypeName + Send + 'static,
{
    match catch(name, || Ok((parse()?, CollClaim::acquire(&h.slot)?))) {
        Ok((a, claim)) => spawn(env, name, move || claim.with(|c| run(c, a))),
        Err(e) => rejected(env, name, e),
    }
}

/// Broadcast of a byte string from `root` (data: the root's bytes; null on the others).
#[napi]
pub fn collective_broadcast<'env>(
    env: &'env Env,
    h: &NativeCollective,
    data: Option<Uint8Array>,
    root: f64,
) -> Result<PromiseRaw<'env, Uint8Array>> {
    let size = h.slot.size;
    let rank = h.slot.rank;
    coll_op(
        env,
        h,
        "spark.collectiveBroadcast",
        || {
            let root = convert::count(root, "root", size.saturating_sub(1))?;
            let d = match (rank == root, data) {
                (true, Some(d)) if d.len() <= MAX_BROADCAST_BYTES => Some(d.to_vec()),
                (true, Some(d)) => {
                    return Err(Error::invalid(format!(
                        "broadcast of {} bytes exceeds {MAX_BROADCAST_BYTES}",
                        d.len()
                    )))
                }
                (true, None) => {
                    return Err(Error::invalid("the root of a broadcast must give data"))
                }
                (false, _) => None,
            };
            Ok((d, root))
        },
        |c, (d, root)| Ok(Uint8Array::new(c.broadcast_bytes(d, root)?)),
    )
}

#[napi]
pub fn collective_allreduce_f32<'env>(
    env: &'env Env,
    h: &NativeCollective,
    data: Float32Array,
) -> Result<PromiseRaw<'env, Float32Array>> {
    coll_op(
        env,
        h,
        "spark.collectiveAllreduceF32",
        || convert::f32_vec(&data, "data"),
        |c, mut x| {
            c.allreduce_f32(&mut x)?;
            Ok(Float32Array::new(x))
        },
    )
}

#[napi]
pub fn collective_allreduce_f64<'env>(
    env: &'env Env,
    h: &NativeCollective,
    data: Float64Array,
) -> Result<PromiseRaw<'env, Float64Array>> {
    coll_op(
        env,
        h,
        "spark.collectiveAllreduceF64",
        || {
            if data.len() > convert::MAX_TYPED_ELEMS {
                return Err(Error::invalid("data is too long"));
            }
            Ok(data.to_vec())
        },
        |c, mut x| {
            c.allreduce_f64(&mut x)?;
            Ok(Float64Array::new(x))
        },
    )
}

#[napi]
pub fn collective_barrier<'env>(
    env: &'env Env,
    h: &NativeCollective,
) -> Result<PromiseRaw<'env, ()>> {
    coll_op(
        env,
        h,
        "spark.collectiveBarrier",
        || Ok(()),
        |c, ()| c.barrier(),
    )
}

// ---- model operations over a collective ----

fn model_coll_op<'env, A, T>(
    env: &'env Env,
    m: &NativeModel,
    h: &NativeCollective,
    name: &'static str,
    parse: impl FnOnce() -> crate::error::Result<A>,
    run: impl FnOnce(&mut crate::model::Model, &mut Collective, A) -> crate::error::Result<T>
        + Send
        + 'static,
) -> Result<PromiseRaw<'env, T>>
where
    A: Send + 'static,
    T: ToNapiValue + TypeName + Send + 'static,
{
    let prepared = catch(name, || {
        m.slot().trainable()?;
        let a = parse()?;
        let mc = Claim::acquire(m.slot())?;
        let cc = CollClaim::acquire(&h.slot)?;
        Ok((a, mc, cc))
    });
    match prepared {
        Ok((a, mc, cc)) => spawn(env, name, move || {
            mc.with(|model| cc.with(|c| run(model, c, a)))
        }),
        Err(e) => rejected(env, name, e),
    }
}

/// Sums the model's gradient buffer across the group in place.
#[napi]
pub fn allreduce_grads<'env>(
    env: &'env Env,
    model: &NativeModel,
    collective: &NativeCollective,
) -> Result<PromiseRaw<'env, ()>> {
    model_coll_op(
        env,
        model,
        collective,
        "spark.allreduceGrads",
        || Ok(()),
        |m, c, ()| m.allreduce_grads(c),
    )
}

/// ZeRO-1 AdamW step over the group; resolves with the global gradient norm before clipping.
#[napi]
pub fn apply_optimizer_sharded<'env>(
    env: &'env Env,
    model: &NativeModel,
    collective: &NativeCollective,
    optimizer: NativeAdamW,
) -> Result<PromiseRaw<'env, f64>> {
    model_coll_op(
        env,
        model,
        collective,
        "spark.applyOptimizerSharded",
        || convert::adamw(&optimizer),
        |m, c, o| Ok(m.sharded_step(c, &o)? as f64),
    )
}

/// Makes the optimizer state whole on every rank (all-gather of the shards).
#[napi]
pub fn gather_optimizer_state<'env>(
    env: &'env Env,
    model: &NativeModel,
    collective: &NativeCollective,
) -> Result<PromiseRaw<'env, ()>> {
    model_coll_op(
        env,
        model,
        collective,
        "spark.gatherOptimizerState",
        || Ok(()),
        |m, c, ()| m.gather_optimizer_state(c),
    )
}

/// This rank's slice of the optimizer state.
#[napi(object)]
pub struct NativeOptimizerShard {
    pub offset: f64,
    pub m: Float32Array,
    pub v: Float32Array,
    pub step: f64,
}

#[napi]
pub fn get_optimizer_shard<'env>(
    env: &'env Env,
    model: &NativeModel,
) -> Result<PromiseRaw<'env, NativeOptimizerShard>> {
    const NAME: &str = "spark.getOptimizerShard";
    let prepared = catch(NAME, || {
        model.slot().trainable()?;
        Claim::acquire(model.slot())
    });
    match prepared {
        Ok(claim) => spawn(env, NAME, move || {
            claim.with(|m| {
                let s = m.optimizer_shard()?;
                Ok(NativeOptimizerShard {
                    offset: s.offset as f64,
                    m: Float32Array::new(s.m),
                    v: Float32Array::new(s.v),
                    step: s.step as f64,
                })
            })
        }),
        Err(e) => rejected(env, NAME, e),
    }
}

#[napi]
pub fn set_optimizer_shard<'env>(
    env: &'env Env,
    model: &NativeModel,
    shard: NativeOptimizerShard,
) -> Result<PromiseRaw<'env, ()>> {
    const NAME: &str = "spark.setOptimizerShard";
    let prepared = catch(NAME, || {
        model.slot().trainable()?;
        let s = OptimizerShard {
            offset: convert::count(shard.offset, "shard.offset", model.slot().num_params)?,
            m: convert::f32_vec(&shard.m, "shard.m")?,
            v: convert::f32_vec(&shard.v, "shard.v")?,
            step: convert::u53(shard.step, "shard.step")?,
        };
        Ok((s, Claim::acquire(model.slot())?))
    });
    match prepared {
        Ok((s, claim)) => spawn(env, NAME, move || claim.with(|m| m.set_optimizer_shard(s))),
        Err(e) => rejected(env, NAME, e),
    }
}
