//! The exported model operations (the raw binding `kernels/ts/native.ts` declares; `kernels/ts/model.ts`
//! wraps it in the typed `Model` class). Each is thin: convert the arguments (`convert`), claim the model
//! (`handle`), run the model or checkpoint code on a libuv worker (`task`), return its output.
//!
//! Conventions: synchronous functions (`liveModels`, `presetNames`, `presetConfig`, `validateConfig`,
//! `modelInfo`, `freeModel`) throw; asynchronous ones return a Promise and report bad argument values
//! (NaN, out of range, closed or busy model) by rejecting it. JS type errors are thrown by napi-rs's argument
//! conversion before the function runs. Every error carries `code` (`crate::error::ErrorCode`).
use super::convert::{
    self, NativeAdamW, NativeConfig, NativeLoss, NativeLossSums, NativeModelInfo,
    NativeOptimizerState, NativeParamInfo, NativeSample, NativeSampleRequest, NativeSequence,
    NativeTrainStats, MAX_SEQS,
};
use super::error::{catch, guard, Result};
use super::handle::{self, Claim, ModelSlot, NativeModel};
use super::task::{rejected, spawn};
use crate::checkpoint;
use crate::error::Error;
use crate::model::{Model, ModelConfig};
use napi::bindgen_prelude::{Env, Float32Array, PromiseRaw, ToNapiValue, TypeName, Uint32Array};
use napi_derive::napi;
use std::path::Path;

/// Checks and converts the arguments on the JS thread (`parse`), claims the model, then runs `run` on a
/// worker. Argument errors and a closed or busy model reject the returned Promise.
fn model_op<'env, A, T>(
    env: &'env Env,
    h: &NativeModel,
    name: &'static str,
    parse: impl FnOnce(&ModelSlot) -> crate::error::Result<A>,
    run: impl FnOnce(&mut Model, A) -> crate::error::Result<T> + Send + 'static,
) -> Result<PromiseRaw<'env, T>>
where
    A: Send + 'static,
    T: ToNapiValue + TypeName + Send + 'static,
{
    let slot = h.slot();
    let prepared = catch(name, || {
        let a = parse(slot.as_ref())?;
        Ok((Claim::acquire(slot)?, a))
    });
    match prepared {
        Ok((claim, a)) => spawn(env, name, move || claim.with(|m| run(m, a))),
        Err(e) => rejected(env, name, e),
    }
}

fn length_is(v: &[f32], slot: &ModelSlot, what: &str) -> crate::error::Result<()> {
    if v.len() != slot.num_params {
        return Err(Error::invalid(format!(
            "{what} has {} values, the model has {}",
            v.len(),
            slot.num_params
        )));
    }
    Ok(())
}

/// Number of models holding native memory in this process (diagnostics, leak tests).
#[napi]
pub fn live_models() -> Result<f64> {
    guard("liveModels", || Ok(handle::live_models() as f64))
}

#[napi]
pub fn preset_names() -> Result<Vec<String>> {
    guard("presetNames", || {
        Ok(ModelConfig::PRESETS.iter().map(|s| s.to_string()).collect())
    })
}

/// The configuration of a preset, or null for an unknown name.
#[napi]
pub fn preset_config(name: String) -> Result<Option<NativeConfig>> {
    guard("presetConfig", || {
        Ok(ModelConfig::preset(&name).map(|c| NativeConfig::from(&c)))
    })
}

/// The number of parameters of a valid configuration (throws ERR_SPARK_INVALID_INPUT with the problem).
#[napi]
pub fn validate_config(config: NativeConfig) -> Result<f64> {
    guard("validateConfig", || {
        Ok(convert::config(&config)?.num_params() as f64)
    })
}

/// A new model initialised deterministically from `seed`, on `device` (`cpu`, the default, or `cuda:N`: refused
/// with ERR_SPARK_CUDA_UNAVAILABLE naming what is missing — driver, library, device — or, when everything is
/// there, that the CUDA model is not wired in this build).
#[napi]
pub fn create_model<'env>(
    env: &'env Env,
    config: NativeConfig,
    seed: f64,
    device: Option<String>,
) -> Result<PromiseRaw<'env, NativeModel>> {
    const NAME: &str = "spark.createModel";
    match catch(NAME, || {
        Ok((
            convert::config(&config)?,
            convert::u53(seed, "seed")?,
            convert::device(device.as_deref())?,
        ))
    }) {
        Ok((cfg, seed, dev)) => spawn(env, NAME, move || {
            crate::cuda::require(dev)?;
            Ok(NativeModel::new(
                Model::new(cfg, seed).map_err(Error::invalid)?,
            ))
        }),
        Err(e) => rejected(env, NAME, e),
    }
}

/// A new model with the weights of safetensors `files` (F32/BF16/F16; all of the configuration's parameters,
/// possibly spread over shards), without random initialisation. Gradient and AdamW buffers are allocated by
/// the first training call.
/// `device` as for `createModel` (checked before any file is read).
#[napi]
pub fn load_model<'env>(
    env: &'env Env,
    config: NativeConfig,
    files: Vec<String>,
    device: Option<String>,
) -> Result<PromiseRaw<'env, NativeModel>> {
    const NAME: &str = "spark.loadModel";
    match catch(NAME, || {
        Ok((
            convert::config(&config)?,
            convert::paths(files, "files")?,
            convert::device(device.as_deref())?,
        ))
    }) {
        Ok((cfg, files, dev)) => spawn(env, NAME, move || {
            crate::cuda::require(dev)?;
            Ok(NativeModel::new(checkpoint::load_model(cfg, &files)?))
        }),
        Err(e) => rejected(env, NAME, e),
    }
}

/// Facts about a model: id, config, parameter count and table, frozen, closed (works on freed handles too).
#[napi]
pub fn model_info(h: &NativeModel) -> Result<NativeModelInfo> {
    let s = h.slot();
    guard("modelInfo", || {
        Ok(NativeModelInfo {
            id: s.id as f64,
            config: NativeConfig::from(&s.cfg),
            num_params: s.num_params as f64,
            frozen: s.frozen,
            closed: s.is_closed(),
            params: s.table.iter().map(NativeParamInfo::from).collect(),
        })
    })
}

/// Releases the model's memory (now, or when the running operation ends); false when already freed.
#[napi]
pub fn free_model(h: &NativeModel) -> Result<bool> {
    guard("freeModel", || Ok(h.slot().free()))
}

/// Logits (batch, seq, vocab) for a (batch, seq) block of token ids.
#[napi]
pub fn forward<'env>(
    env: &'env Env,
    h: &NativeModel,
    tokens: Uint32Array,
    batch: f64,
    seq: f64,
) -> Result<PromiseRaw<'env, Float32Array>> {
    model_op(
        env,
        h,
        "spark.forward",
        |_| {
            Ok((
                convert::u32_vec(&tokens, "tokens")?,
                convert::count(batch, "batch", MAX_SEQS)?,
                convert::count(seq, "seq", 1 << 20)?,
            ))
        },
        |m, (toks, b, t)| {
            Ok(Float32Array::new(
                m.forward_logits(&toks, b, t).map_err(Error::invalid)?,
            ))
        },
    )
}

/// Log-prob of every response token of every sequence (one Float32Array per sequence).
#[napi]
pub fn logprobs<'env>(
    env: &'env Env,
    h: &NativeModel,
    sequences: Vec<NativeSequence>,
) -> Result<PromiseRaw<'env, Vec<Float32Array>>> {
    model_op(
        env,
        h,
        "spark.logprobs",
        |_| convert::sequences(&sequences, "sequences"),
        |m, seqs| {
            Ok(m.logprobs(&seqs)
                .map_err(Error::invalid)?
                .into_iter()
                .map(Float32Array::new)
                .collect())
        },
    )
}

/// KV-cache sampling of a batch of prompts.
#[napi]
pub fn sample<'env>(
    env: &'env Env,
    h: &NativeModel,
    request: NativeSampleRequest,
) -> Result<PromiseRaw<'env, Vec<NativeSample>>> {
    model_op(
        env,
        h,
        "spark.sample",
        |_| convert::sample_request(&request),
        |m, req| {
            Ok(m.sample(&req)
                .map_err(Error::invalid)?
                .into_iter()
                .map(NativeSample::from)
                .collect())
        },
    )
}

/// One optimiser step over micro-batches (zero grads, accumulate, clip, AdamW).
#[napi]
pub fn train_step<'env>(
    env: &'env Env,
    h: &NativeModel,
    micro_batches: Vec<Vec<NativeSequence>>,
    loss: NativeLoss,
    optimizer: NativeAdamW,
) -> Result<PromiseRaw<'env, NativeTrainStats>> {
    model_op(
        env,
        h,
        "spark.trainStep",
        |slot| {
            slot.trainable()?;
            Ok((
                convert::micro_batches(&micro_batches)?,
                convert::loss(&loss)?,
                convert::adamw(&optimizer)?,
            ))
        },
        |m, (mbs, loss, opt)| {
            Ok(m.train_step(&mbs, &loss, &opt)
                .map_err(Error::invalid)?
                .into())
        },
    )
}

/// Sets every gradient to 0.
#[napi]
pub fn zero_grads<'env>(env: &'env Env, h: &NativeModel) -> Result<PromiseRaw<'env, ()>> {
    model_op(env, h, "spark.zeroGrads", ModelSlot::trainable, |m, ()| {
        m.zero_grads().map_err(Error::model)
    })
}

/// Forward + backward of one micro-batch, adding scale·∂(Σ token losses)/∂θ into the gradients.
#[napi]
pub fn accumulate_grads<'env>(
    env: &'env Env,
    h: &NativeModel,
    sequences: Vec<NativeSequence>,
    loss: NativeLoss,
    scale: f64,
) -> Result<PromiseRaw<'env, NativeLossSums>> {
    model_op(
        env,
        h,
        "spark.accumulateGrads",
        |slot| {
            slot.trainable()?;
            Ok((
                convert::sequences(&sequences, "sequences")?,
                convert::loss(&loss)?,
                convert::f32_of(scale, "scale")?,
            ))
        },
        |m, (seqs, loss, scale)| {
            Ok(m.accumulate_grads(&seqs, &loss, scale)
                .map_err(Error::invalid)?
                .into())
        },
    )
}

/// Clips the gradients and applies AdamW; resolves with the global gradient norm before clipping.
#[napi]
pub fn apply_optimizer<'env>(
    env: &'env Env,
    h: &NativeModel,
    optimizer: NativeAdamW,
) -> Result<PromiseRaw<'env, f64>> {
    model_op(
        env,
        h,
        "spark.applyOptimizer",
        |slot| {
            slot.trainable()?;
            convert::adamw(&optimizer)
        },
        |m, opt| Ok(m.clip_and_step(&opt).map_err(Error::invalid)? as f64),
    )
}

/// A copy of the flat parameter buffer (a Float32Array over the copy: no second copy into JS memory).
#[napi]
pub fn get_params<'env>(env: &'env Env, h: &NativeModel) -> Result<PromiseRaw<'env, Float32Array>> {
    model_op(
        env,
        h,
        "spark.getParams",
        |_| Ok(()),
        |m, ()| Ok(Float32Array::new(m.params().to_vec())),
    )
}

/// Replaces every parameter (length and finiteness checked; allowed on frozen copies, e.g. to refresh a
/// reference model).
#[napi]
pub fn set_params<'env>(
    env: &'env Env,
    h: &NativeModel,
    params: Float32Array,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.setParams",
        |slot| {
            let p = convert::f32_vec(&params, "params")?;
            length_is(&p, slot, "params")?;
            Ok(p)
        },
        |m, p| m.replace_params(p).map_err(Error::invalid),
    )
}

/// A copy of the flat gradient buffer.
#[napi]
pub fn get_grads<'env>(env: &'env Env, h: &NativeModel) -> Result<PromiseRaw<'env, Float32Array>> {
    model_op(env, h, "spark.getGrads", ModelSlot::trainable, |m, ()| {
        Ok(Float32Array::new(m.grads().map_err(Error::model)?.to_vec()))
    })
}

/// Replaces every gradient (e.g. after a data-parallel all-reduce).
#[napi]
pub fn set_grads<'env>(
    env: &'env Env,
    h: &NativeModel,
    grads: Float32Array,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.setGrads",
        |slot| {
            slot.trainable()?;
            let g = convert::f32_vec(&grads, "grads")?;
            length_is(&g, slot, "grads")?;
            Ok(g)
        },
        |m, g| m.set_grads(&g).map_err(Error::invalid),
    )
}

/// The AdamW moments and step count.
#[napi]
pub fn get_optimizer_state<'env>(
    env: &'env Env,
    h: &NativeModel,
) -> Result<PromiseRaw<'env, NativeOptimizerState>> {
    model_op(
        env,
        h,
        "spark.getOptimizerState",
        ModelSlot::trainable,
        |m, ()| {
            let (mm, vv, step) = m.optimizer_state().map_err(Error::model)?;
            Ok(NativeOptimizerState {
                m: Float32Array::new(mm.to_vec()),
                v: Float32Array::new(vv.to_vec()),
                step: step as f64,
            })
        },
    )
}

/// Replaces the AdamW moments and step count.
#[napi]
pub fn set_optimizer_state<'env>(
    env: &'env Env,
    h: &NativeModel,
    m: Float32Array,
    v: Float32Array,
    step: f64,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.setOptimizerState",
        |slot| {
            slot.trainable()?;
            Ok((
                convert::f32_vec(&m, "m")?,
                convert::f32_vec(&v, "v")?,
                convert::u53(step, "step")?,
            ))
        },
        |model, (mm, vv, step)| {
            model
                .set_optimizer_state(&mm, &vv, step)
                .map_err(Error::invalid)
        },
    )
}

/// A new, independent, frozen model with the same parameters.
#[napi]
pub fn clone_frozen<'env>(
    env: &'env Env,
    h: &NativeModel,
) -> Result<PromiseRaw<'env, NativeModel>> {
    model_op(
        env,
        h,
        "spark.cloneFrozen",
        |_| Ok(()),
        |m, ()| Ok(NativeModel::new(m.clone_frozen())),
    )
}

/// Writes the weights as one F32 safetensors file with Hugging Face names (atomically).
#[napi]
pub fn save_weights<'env>(
    env: &'env Env,
    h: &NativeModel,
    path: String,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.saveWeights",
        |_| convert::path(path, "path"),
        |m, p| checkpoint::save_weights(m, &p),
    )
}

/// Replaces the weights from safetensors files (all-or-nothing: on error the model is unchanged).
#[napi]
pub fn load_weights<'env>(
    env: &'env Env,
    h: &NativeModel,
    files: Vec<String>,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.loadWeights",
        |_| convert::paths(files, "files"),
        |m, fs| checkpoint::load_weights(m, &fs),
    )
}

/// `saveOptimizer` / `loadOptimizer`: a trainable model and one file.
fn optimizer_file<'env>(
    env: &'env Env,
    h: &NativeModel,
    name: &'static str,
    path: String,
    io: fn(&mut Model, &Path) -> crate::error::Result<()>,
) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        name,
        |slot| {
            slot.trainable()?;
            convert::path(path, "path")
        },
        move |m, p| io(m, &p),
    )
}

/// Writes the AdamW state as a safetensors file.
#[napi]
pub fn save_optimizer<'env>(
    env: &'env Env,
    h: &NativeModel,
    path: String,
) -> Result<PromiseRaw<'env, ()>> {
    optimizer_file(
        env,
        h,
        "spark.saveOptimizer",
        path,
        checkpoint::save_optimizer,
    )
}

/// Reads the AdamW state written by `saveOptimizer`.
#[napi]
pub fn load_optimizer<'env>(
    env: &'env Env,
    h: &NativeModel,
    path: String,
) -> Result<PromiseRaw<'env, ()>> {
    optimizer_file(
        env,
        h,
        "spark.loadOptimizer",
        path,
        checkpoint::load_optimizer,
    )
}

/// Rejects with ERR_SPARK_PANIC: panics on the worker while holding the model lock, so tests can check the
/// model is then reported as poisoned (not silently reused).
#[napi]
pub fn debug_panic_in_model<'env>(env: &'env Env, h: &NativeModel) -> Result<PromiseRaw<'env, ()>> {
    model_op(
        env,
        h,
        "spark.debugPanicInModel",
        |_| Ok(()),
        |_m, ()| -> crate::error::Result<()> {
            panic!("deliberate test panic inside a model operation")
        },
    )
}
