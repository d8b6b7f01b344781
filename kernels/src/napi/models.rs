//! Model handles and the model operations exported to JS.
//!
//! A handle is a Node-API external, type-tagged so a foreign external is rejected, holding an
//! `Arc<ModelSlot>`. Several models may live in one process; each slot owns its `Model`.
//!
//! Concurrency: one operation at a time per model. Every call first claims the slot's `busy` flag on the JS
//! thread; if another operation is still running the call is rejected with `ERR_SPARK_MODEL_BUSY` (never
//! blocks the JS thread or a libuv worker). The TypeScript wrapper queues calls per model, so its users never
//! see that error. The claim is released when the worker's computation ends (also after a panic).
//!
//! Closing: `freeModel` marks the slot closed; the model's memory is released at once, or, if an operation
//! is running, when that operation ends. Every later call fails with `ERR_SPARK_MODEL_CLOSED`. A model whose
//! operation panicked is poisoned: later calls fail with a message saying so (free it and reload).
//!
//! Heavy operations run on a libuv worker (`spawn_promise`); their inputs are copied out of JS on the JS thread
//! first (see env.rs), and their outputs are copied into fresh JS typed arrays on the JS thread at the end.
use super::env::{Env, Value};
use super::error::{Error, ErrorCode, Result};
use super::sys;
use super::task::{define, rejected, spawn_promise};
use crate::model::{
    AdamWParams, Finish, LossSpec, LossStats, Model, ModelConfig, ParamInfo, SampleOutput,
    SampleRequest, Sequence, TrainStats,
};
use crate::safetensors::{self as st, TensorData, TensorOut, Wanted};
use std::os::raw::c_void;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most sequences in one call and most micro-batches in one step (the model enforces its own limits too).
const MAX_SEQS: usize = 1 << 16;
const MAX_MICRO_BATCHES: usize = 1 << 12;
/// Most checkpoint shards in one load.
const MAX_FILES: usize = 1024;

/// Type tag of model externals (random constants: identifies externals made by this addon).
const MODEL_TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x5f1a_2c3e_9d47_b801,
    upper: 0x8e26_4a0d_c3b5_71f9,
};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Models currently holding memory (created and neither freed nor garbage-collected): `liveModels()`.
static LIVE: AtomicU64 = AtomicU64::new(0);

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

pub struct ModelSlot {
    id: u64,
    busy: AtomicBool,
    closed: AtomicBool,
    frozen: bool,
    cfg: ModelConfig,
    table: Vec<ParamInfo>,
    num_params: usize,
    model: Mutex<Option<Live>>,
}

impl ModelSlot {
    fn new(model: Model) -> Arc<ModelSlot> {
        Arc::new(ModelSlot {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            busy: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            frozen: model.is_frozen(),
            cfg: model.config().clone(),
            table: model.param_table().to_vec(),
            num_params: model.num_params(),
            model: Mutex::new(Some(Live::new(model))),
        })
    }
}

/// The claim on a slot for one operation; dropping it (on the worker, also while unwinding) releases the
/// claim, and frees the model if the slot was closed meanwhile.
struct Claim(Arc<ModelSlot>);

impl Claim {
    fn acquire(slot: &Arc<ModelSlot>) -> Result<Claim> {
        if slot.closed.load(Ordering::Acquire) {
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
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> Result<T>) -> Result<T> {
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
        if self.0.closed.load(Ordering::Acquire) {
            if let Ok(mut g) = self.0.model.lock() {
                g.take();
            }
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

unsafe extern "C" fn finalize_slot(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the Box<Arc<ModelSlot>> leaked in `handle_value`; Node finalizes it exactly once.
    // Dropping may free a large model: never let a panic escape into Node.
    let _ = std::panic::catch_unwind(|| drop(Box::from_raw(data as *mut Arc<ModelSlot>)));
}

fn handle_value(env: Env, slot: Arc<ModelSlot>) -> Result<Value> {
    let raw = Box::into_raw(Box::new(slot));
    let mut v = ptr::null_mut();
    let st = unsafe {
        sys::napi_create_external(
            env.0,
            raw.cast(),
            Some(finalize_slot),
            ptr::null_mut(),
            &mut v,
        )
    };
    if let Err(e) = env.check(st, "create_external") {
        drop(unsafe { Box::from_raw(raw) });
        return Err(e);
    }
    env.check(
        unsafe { sys::napi_type_tag_object(env.0, v, &MODEL_TAG) },
        "type_tag_object",
    )?;
    Ok(v)
}

fn slot_of(env: Env, v: Value) -> Result<Arc<ModelSlot>> {
    if env.type_of(v)? != sys::napi_external {
        return Err(Error::invalid(
            "model handle must be a model created by @spark/kernels",
        ));
    }
    let mut ok = false;
    env.check(
        unsafe { sys::napi_check_object_type_tag(env.0, v, &MODEL_TAG, &mut ok) },
        "check_type_tag",
    )?;
    if !ok {
        return Err(Error::invalid(
            "model handle is an external from another addon",
        ));
    }
    let mut data: *mut c_void = ptr::null_mut();
    env.check(
        unsafe { sys::napi_get_value_external(env.0, v, &mut data) },
        "get_value_external",
    )?;
    // SAFETY: tagged externals are created only by handle_value with a Box<Arc<ModelSlot>>.
    Ok(unsafe { (*(data as *const Arc<ModelSlot>)).clone() })
}

/// Parses the arguments on the JS thread, claims the model, runs `compute` on a worker, converts with
/// `finish`. Argument errors reject the returned promise.
fn model_op<A, T, P, C, F>(
    env: Env,
    args: &[Value],
    name: &'static str,
    parse: P,
    compute: C,
    finish: F,
) -> Result<Value>
where
    A: Send + 'static,
    T: Send + 'static,
    P: FnOnce(Env, &[Value], &ModelSlot) -> Result<A>,
    C: FnOnce(&mut Model, A) -> Result<T> + Send + 'static,
    F: FnOnce(Env, T) -> Result<Value> + Send + 'static,
{
    let prepared = (|| {
        let slot = slot_of(env, args[0])?;
        let a = parse(env, &args[1..], &slot)?;
        let claim = Claim::acquire(&slot)?;
        Ok((claim, a))
    })();
    let (claim, a) = match prepared {
        Ok(p) => p,
        Err(e) => return rejected(env, &e),
    };
    spawn_promise(env, name, move || claim.with(|m| compute(m, a)), finish)
}

// ---------------------------------------------------------------------------------------------------------
// argument parsing

/// Config object with Hugging Face field names (as in config.json).
fn parse_config(env: Env, v: Value) -> Result<ModelConfig> {
    let w = "config";
    let u = |name: &str| -> Result<usize> {
        env.usize(env.req(v, name, w)?, &format!("config.{name}"), 1 << 40)
    };
    let f =
        |name: &str| -> Result<f32> { env.f32(env.req(v, name, w)?, &format!("config.{name}")) };
    let b =
        |name: &str| -> Result<bool> { env.bool(env.req(v, name, w)?, &format!("config.{name}")) };
    let cfg = ModelConfig {
        hidden_size: u("hidden_size")?,
        intermediate_size: u("intermediate_size")?,
        num_hidden_layers: u("num_hidden_layers")?,
        num_attention_heads: u("num_attention_heads")?,
        num_key_value_heads: u("num_key_value_heads")?,
        vocab_size: u("vocab_size")?,
        rms_norm_eps: f("rms_norm_eps")?,
        rope_theta: f("rope_theta")?,
        tie_word_embeddings: b("tie_word_embeddings")?,
        max_position_embeddings: u("max_position_embeddings")?,
        attention_bias: b("attention_bias")?,
    };
    cfg.validate().map_err(Error::invalid)?;
    Ok(cfg)
}

fn config_value(env: Env, c: &ModelConfig) -> Result<Value> {
    let o = env.object()?;
    let n = |x: usize| env.number(x as f64);
    env.set(o, "hidden_size", n(c.hidden_size)?)?;
    env.set(o, "intermediate_size", n(c.intermediate_size)?)?;
    env.set(o, "num_hidden_layers", n(c.num_hidden_layers)?)?;
    env.set(o, "num_attention_heads", n(c.num_attention_heads)?)?;
    env.set(o, "num_key_value_heads", n(c.num_key_value_heads)?)?;
    env.set(o, "vocab_size", n(c.vocab_size)?)?;
    env.set(o, "rms_norm_eps", env.number(c.rms_norm_eps as f64)?)?;
    env.set(o, "rope_theta", env.number(c.rope_theta as f64)?)?;
    env.set(
        o,
        "tie_word_embeddings",
        env.boolean(c.tie_word_embeddings)?,
    )?;
    env.set(o, "max_position_embeddings", n(c.max_position_embeddings)?)?;
    env.set(o, "attention_bias", env.boolean(c.attention_bias)?)?;
    Ok(o)
}

fn f32_opt(env: Env, obj: Value, name: &str, what: &str) -> Result<Vec<f32>> {
    match env.opt(obj, name, what)? {
        Some(v) => env.f32_vec(v, &format!("{what}.{name}")),
        None => Ok(Vec::new()),
    }
}

/// `{ tokens: Uint32Array, promptLen, advantage?, oldLogprobs?, refLogprobs? }`
fn parse_sequence(env: Env, v: Value, what: &str) -> Result<Sequence> {
    let tokens = env.u32_vec(env.req(v, "tokens", what)?, &format!("{what}.tokens"))?;
    let prompt_len = env.usize(
        env.req(v, "promptLen", what)?,
        &format!("{what}.promptLen"),
        tokens.len(),
    )?;
    let advantage = match env.opt(v, "advantage", what)? {
        Some(a) => env.f32(a, &format!("{what}.advantage"))?,
        None => 0.0,
    };
    Ok(Sequence {
        tokens,
        prompt_len,
        advantage,
        old_logprobs: f32_opt(env, v, "oldLogprobs", what)?,
        ref_logprobs: f32_opt(env, v, "refLogprobs", what)?,
    })
}

fn parse_sequences(env: Env, v: Value, what: &str) -> Result<Vec<Sequence>> {
    env.array_items(v, what, MAX_SEQS)?
        .into_iter()
        .enumerate()
        .map(|(i, s)| parse_sequence(env, s, &format!("{what}[{i}]")))
        .collect()
}

/// `{ kind: 'sft' } | { kind: 'grpo', clipEps, klCoef }`
fn parse_loss(env: Env, v: Value) -> Result<LossSpec> {
    let kind = env.string_value(env.req(v, "kind", "loss")?, "loss.kind")?;
    match kind.as_str() {
        "sft" => Ok(LossSpec::Sft),
        "grpo" => Ok(LossSpec::Grpo {
            clip_eps: env.f32(env.req(v, "clipEps", "loss")?, "loss.clipEps")?,
            kl_coef: env.f32(env.req(v, "klCoef", "loss")?, "loss.klCoef")?,
        }),
        other => Err(Error::invalid(format!(
            "loss.kind must be \"sft\" or \"grpo\", got {other:?}"
        ))),
    }
}

/// `{ lr, beta1, beta2, eps, weightDecay, maxGradNorm }` (all required: the wrapper fills defaults).
fn parse_opt(env: Env, v: Value) -> Result<AdamWParams> {
    let f = |name: &str| -> Result<f32> {
        env.f32(env.req(v, name, "optimizer")?, &format!("optimizer.{name}"))
    };
    Ok(AdamWParams {
        lr: f("lr")?,
        beta1: f("beta1")?,
        beta2: f("beta2")?,
        eps: f("eps")?,
        weight_decay: f("weightDecay")?,
        max_grad_norm: f("maxGradNorm")?,
    })
}

fn parse_paths(env: Env, v: Value, what: &str) -> Result<Vec<PathBuf>> {
    let items = env.array_items(v, what, MAX_FILES)?;
    if items.is_empty() {
        return Err(Error::invalid(format!(
            "{what} must list at least one file"
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, p)| Ok(PathBuf::from(env.string_value(p, &format!("{what}[{i}]"))?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// output conversion

fn stats_value(env: Env, s: &TrainStats) -> Result<Value> {
    let o = env.object()?;
    env.set(o, "loss", env.number(s.loss as f64)?)?;
    env.set(o, "kl", env.number(s.kl as f64)?)?;
    env.set(o, "clipFraction", env.number(s.clip_fraction as f64)?)?;
    env.set(o, "gradNorm", env.number(s.grad_norm as f64)?)?;
    env.set(o, "tokens", env.number(s.tokens as f64)?)?;
    Ok(o)
}

fn loss_stats_value(env: Env, s: &LossStats) -> Result<Value> {
    let o = env.object()?;
    env.set(o, "lossSum", env.number(s.loss_sum)?)?;
    env.set(o, "klSum", env.number(s.kl_sum)?)?;
    env.set(o, "clipped", env.number(s.clipped as f64)?)?;
    env.set(o, "tokens", env.number(s.tokens as f64)?)?;
    Ok(o)
}

fn info_value(env: Env, slot: &ModelSlot) -> Result<Value> {
    let o = env.object()?;
    env.set(o, "id", env.number(slot.id as f64)?)?;
    env.set(o, "config", config_value(env, &slot.cfg)?)?;
    env.set(o, "numParams", env.number(slot.num_params as f64)?)?;
    env.set(o, "frozen", env.boolean(slot.frozen)?)?;
    env.set(
        o,
        "closed",
        env.boolean(slot.closed.load(Ordering::Acquire))?,
    )?;
    let mut rows = Vec::with_capacity(slot.table.len());
    for p in &slot.table {
        let r = env.object()?;
        env.set(r, "name", env.string(&p.name)?)?;
        let dims: Vec<Value> = p
            .shape
            .iter()
            .map(|&d| env.number(d as f64))
            .collect::<Result<_>>()?;
        env.set(r, "shape", env.array(&dims)?)?;
        env.set(r, "offset", env.number(p.offset as f64)?)?;
        env.set(r, "length", env.number(p.len as f64)?)?;
        rows.push(r);
    }
    env.set(o, "params", env.array(&rows)?)?;
    Ok(o)
}

// ---------------------------------------------------------------------------------------------------------
// checkpoint files

/// Names that may appear in a checkpoint without being parameters: a tied model's `lm_head.weight` (some
/// exporters write the tied matrix twice) and rotary caches some older exporters saved.
fn ignorable(cfg: &ModelConfig) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| {
        (cfg.tie_word_embeddings && name == "lm_head.weight")
            || name.ends_with(".rotary_emb.inv_freq")
    }
}

pub fn load_weights(model: &mut Model, files: &[PathBuf]) -> Result<()> {
    let table = model.param_table().to_vec();
    let cfg = model.config().clone();
    let wanted: Vec<Wanted<'_>> = table
        .iter()
        .map(|p| Wanted {
            name: &p.name,
            shape: &p.shape,
            offset: p.offset,
            len: p.len,
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    // Load into a scratch buffer so a failed load leaves the model unchanged.
    let mut scratch = vec![0.0f32; model.num_params()];
    st::load_named(&paths, &wanted, &mut scratch, &ignorable(&cfg))?;
    if let Some(i) = scratch.iter().position(|x| !x.is_finite()) {
        let p = table
            .iter()
            .find(|p| i >= p.offset && i < p.offset + p.len)
            .map(|p| p.name.as_str())
            .unwrap_or("?");
        return Err(Error::format(format!(
            "checkpoint value of {p} is not finite (flat index {i})"
        )));
    }
    model.set_params(&scratch).map_err(Error::model)
}

pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    let p = model.params();
    let tensors: Vec<TensorOut<'_>> = model
        .param_table()
        .iter()
        .map(|t| TensorOut {
            name: &t.name,
            shape: t.shape.clone(),
            data: TensorData::F32(&p[t.offset..t.offset + t.len]),
        })
        .collect();
    st::write(
        path,
        &tensors,
        &[("format", "pt"), ("producer", "spark-kernels")],
    )?;
    Ok(())
}

const OPT_M: &str = "optimizer.adamw.m";
const OPT_V: &str = "optimizer.adamw.v";

pub fn save_optimizer(model: &Model, path: &Path) -> Result<()> {
    if model.is_frozen() {
        return Err(Error::new(
            ErrorCode::Frozen,
            "a frozen reference model has no optimizer state",
        ));
    }
    let (m, v, step) = model.optimizer_state();
    let n = m.len();
    let step_s = step.to_string();
    let n_s = n.to_string();
    st::write(
        path,
        &[
            TensorOut {
                name: OPT_M,
                shape: vec![n],
                data: TensorData::F32(m),
            },
            TensorOut {
                name: OPT_V,
                shape: vec![n],
                data: TensorData::F32(v),
            },
        ],
        &[
            ("format", "spark-adamw"),
            ("step", &step_s),
            ("num_params", &n_s),
        ],
    )?;
    Ok(())
}

pub fn load_optimizer(model: &mut Model, path: &Path) -> Result<()> {
    if model.is_frozen() {
        return Err(Error::new(
            ErrorCode::Frozen,
            "a frozen reference model has no optimizer state",
        ));
    }
    let mut f = st::SafetensorsFile::open(path)?;
    let shown = path.display().to_string();
    let step: u64 = f
        .header
        .meta("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::format(format!(
                "{shown}: optimizer file lacks a numeric __metadata__.step"
            ))
        })?;
    let n = model.num_params();
    let mut read = |name: &str| -> Result<Vec<f32>> {
        let t = f
            .header
            .get(name)
            .cloned()
            .ok_or_else(|| Error::format(format!("{shown}: missing tensor {name}")))?;
        if t.shape != [n] {
            return Err(Error::format(format!(
                "{shown}: {name} has shape {:?}, the model needs [{n}]",
                t.shape
            )));
        }
        let mut out = vec![0.0f32; n];
        f.read_f32_into(&t, &mut out)?;
        Ok(out)
    };
    let m = read(OPT_M)?;
    let v = read(OPT_V)?;
    model
        .set_optimizer_state(&m, &v, step)
        .map_err(Error::model)
}

// ---------------------------------------------------------------------------------------------------------
// exports

pub fn register(env: Env, exports: Value) -> Result<()> {
    define(env, exports, "presetNames", preset_names)?;
    define(env, exports, "liveModels", live_models)?;
    define(env, exports, "presetConfig", preset_config)?;
    define(env, exports, "validateConfig", validate_config)?;
    define(env, exports, "createModel", create_model)?;
    define(env, exports, "modelInfo", model_info)?;
    define(env, exports, "freeModel", free_model)?;
    define(env, exports, "forward", forward)?;
    define(env, exports, "logprobs", logprobs)?;
    define(env, exports, "sample", sample)?;
    define(env, exports, "trainStep", train_step)?;
    define(env, exports, "zeroGrads", zero_grads)?;
    define(env, exports, "accumulateGrads", accumulate_grads)?;
    define(env, exports, "applyOptimizer", apply_optimizer)?;
    define(env, exports, "getParams", get_params)?;
    define(env, exports, "setParams", set_params)?;
    define(env, exports, "getGrads", get_grads)?;
    define(env, exports, "setGrads", set_grads)?;
    define(env, exports, "getOptimizerState", get_optimizer_state)?;
    define(env, exports, "setOptimizerState", set_optimizer_state)?;
    define(env, exports, "cloneFrozen", clone_frozen)?;
    define(env, exports, "saveWeights", save_weights_js)?;
    define(env, exports, "loadWeights", load_weights_js)?;
    define(env, exports, "saveOptimizer", save_optimizer_js)?;
    define(env, exports, "loadOptimizer", load_optimizer_js)?;
    define(env, exports, "debugPanicInModel", debug_panic_in_model)?;
    Ok(())
}

/// liveModels() → number of models holding native memory in this process (diagnostics, leak tests).
fn live_models(env: Env, _a: &[Value]) -> Result<Value> {
    env.number(LIVE.load(Ordering::Relaxed) as f64)
}

fn preset_names(env: Env, _a: &[Value]) -> Result<Value> {
    let names: Vec<Value> = ModelConfig::PRESETS
        .iter()
        .map(|n| env.string(n))
        .collect::<Result<_>>()?;
    env.array(&names)
}

/// presetConfig(name) → config object | null
fn preset_config(env: Env, a: &[Value]) -> Result<Value> {
    let name = env.string_value(a[0], "preset name")?;
    match ModelConfig::preset(&name) {
        Some(c) => config_value(env, &c),
        None => env.null(),
    }
}

/// validateConfig(config) → number of parameters (throws ERR_SPARK_INVALID_INPUT with the problem)
fn validate_config(env: Env, a: &[Value]) -> Result<Value> {
    let cfg = parse_config(env, a[0])?;
    env.number(cfg.num_params() as f64)
}

/// createModel(config, seed) → Promise<handle>
fn create_model(env: Env, a: &[Value]) -> Result<Value> {
    let parsed = (|| Ok((parse_config(env, a[0])?, env.u64(a[1], "seed")?)))();
    let (cfg, seed) = match parsed {
        Ok(p) => p,
        Err(e) => return rejected(env, &e),
    };
    spawn_promise(
        env,
        "spark.createModel",
        move || Model::new(cfg, seed).map_err(Error::invalid),
        |env, m| handle_value(env, ModelSlot::new(m)),
    )
}

/// modelInfo(handle) → { id, config, numParams, frozen, closed, params: [{name, shape, offset, length}] }
/// (works on closed handles too: it reads only immutable facts).
fn model_info(env: Env, a: &[Value]) -> Result<Value> {
    let slot = slot_of(env, a[0])?;
    info_value(env, &slot)
}

/// freeModel(handle) → boolean (false when it was already freed)
fn free_model(env: Env, a: &[Value]) -> Result<Value> {
    let slot = slot_of(env, a[0])?;
    let was_open = !slot.closed.swap(true, Ordering::AcqRel);
    if was_open
        && slot
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        // Nothing running: release the memory now (otherwise the running operation's Claim does it).
        if let Ok(mut g) = slot.model.lock() {
            g.take();
        }
        slot.busy.store(false, Ordering::Release);
    }
    env.boolean(was_open)
}

/// forward(handle, tokens: Uint32Array, batch, seq) → Promise<Float32Array (batch·seq·vocab)>
fn forward(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.forward",
        |env, a, _| {
            Ok((
                env.u32_vec(a[0], "tokens")?,
                env.usize(a[1], "batch", MAX_SEQS)?,
                env.usize(a[2], "seq", 1 << 20)?,
            ))
        },
        |m, (toks, b, t)| m.forward_logits(&toks, b, t).map_err(Error::invalid),
        |env, logits| env.f32_array(&logits),
    )
}

/// logprobs(handle, sequences) → Promise<Float32Array[]> (one per sequence, one value per response token)
fn logprobs(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.logprobs",
        |env, a, _| parse_sequences(env, a[0], "sequences"),
        |m, seqs| m.logprobs(&seqs).map_err(Error::invalid),
        |env, out: Vec<Vec<f32>>| {
            let arrs: Vec<Value> = out
                .iter()
                .map(|x| env.f32_array(x))
                .collect::<Result<_>>()?;
            env.array(&arrs)
        },
    )
}

/// sample(handle, { prompts: Uint32Array[], temperature, topP, maxNewTokens, stopTokens: Uint32Array, seed })
///   → Promise<{ tokens: Uint32Array, logprobs: Float32Array, finish: 'stop' | 'length' }[]>
fn sample(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.sample",
        |env, a, _| {
            let r = a[0];
            let w = "request";
            let prompts = env
                .array_items(env.req(r, "prompts", w)?, "request.prompts", MAX_SEQS)?
                .into_iter()
                .enumerate()
                .map(|(i, p)| env.u32_vec(p, &format!("request.prompts[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            let stop_tokens = match env.opt(r, "stopTokens", w)? {
                Some(s) => env.u32_vec(s, "request.stopTokens")?,
                None => Vec::new(),
            };
            Ok(SampleRequest {
                prompts,
                temperature: env.f32(env.req(r, "temperature", w)?, "request.temperature")?,
                top_p: env.f32(env.req(r, "topP", w)?, "request.topP")?,
                max_new_tokens: env.usize(
                    env.req(r, "maxNewTokens", w)?,
                    "request.maxNewTokens",
                    1 << 20,
                )?,
                stop_tokens,
                seed: env.u64(env.req(r, "seed", w)?, "request.seed")?,
            })
        },
        |m, req| m.sample(&req).map_err(Error::invalid),
        |env, outs: Vec<SampleOutput>| {
            let mut items = Vec::with_capacity(outs.len());
            for o in &outs {
                let v = env.object()?;
                env.set(v, "tokens", env.u32_array(&o.tokens)?)?;
                env.set(v, "logprobs", env.f32_array(&o.logprobs)?)?;
                let finish = match o.finish {
                    Finish::Stop => "stop",
                    Finish::Length => "length",
                };
                env.set(v, "finish", env.string(finish)?)?;
                items.push(v);
            }
            env.array(&items)
        },
    )
}

fn trainable(slot: &ModelSlot) -> Result<()> {
    if slot.frozen {
        return Err(Error::new(
            ErrorCode::Frozen,
            format!(
                "model #{} is a frozen reference copy: it cannot train or hold gradients",
                slot.id
            ),
        ));
    }
    Ok(())
}

/// trainStep(handle, microBatches: Sequence[][], loss, optimizer) → Promise<TrainStats>
fn train_step(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.trainStep",
        |env, a, slot| {
            trainable(slot)?;
            let mbs = env
                .array_items(a[0], "microBatches", MAX_MICRO_BATCHES)?
                .into_iter()
                .enumerate()
                .map(|(i, mb)| parse_sequences(env, mb, &format!("microBatches[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            Ok((mbs, parse_loss(env, a[1])?, parse_opt(env, a[2])?))
        },
        |m, (mbs, loss, opt)| m.train_step(&mbs, &loss, &opt).map_err(Error::invalid),
        |env, s| stats_value(env, &s),
    )
}

/// zeroGrads(handle) → Promise<void>
fn zero_grads(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.zeroGrads",
        |_, _, slot| trainable(slot),
        |m, ()| {
            m.zero_grads();
            Ok(())
        },
        |env, ()| env.undefined(),
    )
}

/// accumulateGrads(handle, sequences, loss, scale) → Promise<{ lossSum, klSum, clipped, tokens }>
fn accumulate_grads(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.accumulateGrads",
        |env, a, slot| {
            trainable(slot)?;
            Ok((
                parse_sequences(env, a[0], "sequences")?,
                parse_loss(env, a[1])?,
                env.f32(a[2], "scale")?,
            ))
        },
        |m, (seqs, loss, scale)| {
            m.accumulate_grads(&seqs, &loss, scale)
                .map_err(Error::invalid)
        },
        |env, s| loss_stats_value(env, &s),
    )
}

/// applyOptimizer(handle, optimizer) → Promise<number> (global grad norm before clipping)
fn apply_optimizer(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.applyOptimizer",
        |env, a, slot| {
            trainable(slot)?;
            parse_opt(env, a[0])
        },
        |m, opt| m.clip_and_step(&opt).map_err(Error::invalid),
        |env, n| env.number(n as f64),
    )
}

/// getParams(handle) → Promise<Float32Array> (a copy of the flat parameter buffer)
fn get_params(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.getParams",
        |_, _, _| Ok(()),
        |m, ()| Ok(m.params().to_vec()),
        |env, p| env.f32_array(&p),
    )
}

/// setParams(handle, Float32Array) → Promise<void> (length and finiteness checked; allowed on frozen copies,
/// e.g. to refresh a reference model)
fn set_params(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.setParams",
        |env, a, slot| {
            let p = env.f32_vec(a[0], "params")?;
            if p.len() != slot.num_params {
                return Err(Error::invalid(format!(
                    "params has {} values, the model has {}",
                    p.len(),
                    slot.num_params
                )));
            }
            Ok(p)
        },
        |m, p| m.set_params(&p).map_err(Error::invalid),
        |env, ()| env.undefined(),
    )
}

/// getGrads(handle) → Promise<Float32Array>
fn get_grads(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.getGrads",
        |_, _, slot| trainable(slot),
        |m, ()| Ok(m.grads().to_vec()),
        |env, g| env.f32_array(&g),
    )
}

/// setGrads(handle, Float32Array) → Promise<void> (e.g. after a data-parallel all-reduce)
fn set_grads(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.setGrads",
        |env, a, slot| {
            trainable(slot)?;
            let g = env.f32_vec(a[0], "grads")?;
            if g.len() != slot.num_params {
                return Err(Error::invalid(format!(
                    "grads has {} values, the model has {}",
                    g.len(),
                    slot.num_params
                )));
            }
            Ok(g)
        },
        |m, g| m.set_grads(&g).map_err(Error::invalid),
        |env, ()| env.undefined(),
    )
}

/// getOptimizerState(handle) → Promise<{ m: Float32Array, v: Float32Array, step: number }>
fn get_optimizer_state(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.getOptimizerState",
        |_, _, slot| trainable(slot),
        |m, ()| {
            let (mm, vv, step) = m.optimizer_state();
            Ok((mm.to_vec(), vv.to_vec(), step))
        },
        |env, (mm, vv, step)| {
            let o = env.object()?;
            env.set(o, "m", env.f32_array(&mm)?)?;
            env.set(o, "v", env.f32_array(&vv)?)?;
            env.set(o, "step", env.number(step as f64)?)?;
            Ok(o)
        },
    )
}

/// setOptimizerState(handle, m, v, step) → Promise<void>
fn set_optimizer_state(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.setOptimizerState",
        |env, a, slot| {
            trainable(slot)?;
            Ok((
                env.f32_vec(a[0], "m")?,
                env.f32_vec(a[1], "v")?,
                env.u64(a[2], "step")?,
            ))
        },
        |m, (mm, vv, step)| {
            m.set_optimizer_state(&mm, &vv, step)
                .map_err(Error::invalid)
        },
        |env, ()| env.undefined(),
    )
}

/// cloneFrozen(handle) → Promise<handle> (a new, independent, frozen model with the same parameters)
fn clone_frozen(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.cloneFrozen",
        |_, _, _| Ok(()),
        |m, ()| Ok(m.clone_frozen()),
        |env, m| handle_value(env, ModelSlot::new(m)),
    )
}

/// saveWeights(handle, path) → Promise<void> (F32 safetensors, Hugging Face names, atomic rename)
fn save_weights_js(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.saveWeights",
        |env, a, _| Ok(PathBuf::from(env.string_value(a[0], "path")?)),
        |m, path| save_weights(m, &path),
        |env, ()| env.undefined(),
    )
}

/// loadWeights(handle, files: string[]) → Promise<void> (all-or-nothing: on error the model is unchanged)
fn load_weights_js(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.loadWeights",
        |env, a, _| parse_paths(env, a[0], "files"),
        |m, files| load_weights(m, &files),
        |env, ()| env.undefined(),
    )
}

/// saveOptimizer(handle, path) → Promise<void>
fn save_optimizer_js(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.saveOptimizer",
        |env, a, slot| {
            trainable(slot)?;
            Ok(PathBuf::from(env.string_value(a[0], "path")?))
        },
        |m, path| save_optimizer(m, &path),
        |env, ()| env.undefined(),
    )
}

/// loadOptimizer(handle, path) → Promise<void>
fn load_optimizer_js(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.loadOptimizer",
        |env, a, slot| {
            trainable(slot)?;
            Ok(PathBuf::from(env.string_value(a[0], "path")?))
        },
        |m, path| load_optimizer(m, &path),
        |env, ()| env.undefined(),
    )
}

/// debugPanicInModel(handle) → Promise that rejects with ERR_SPARK_PANIC: panics on the worker while holding
/// the model lock, so tests can check the model is then reported as poisoned (not silently reused).
fn debug_panic_in_model(env: Env, a: &[Value]) -> Result<Value> {
    model_op(
        env,
        a,
        "spark.debugPanicInModel",
        |_, _, _| Ok(()),
        |_m, ()| -> Result<()> { panic!("deliberate test panic inside a model operation") },
        |env, ()| env.undefined(),
    )
}
