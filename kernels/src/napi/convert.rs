//! Values crossing the boundary: the JS object shapes (`#[napi(object)]`, from which the TypeScript
//! declarations in `kernels/index.d.ts` are generated) and their conversion to and from the model's Rust
//! types.
//!
//! napi-rs converts the JS types (a wrong type — a string for a number, an array for a `Uint32Array` — is
//! thrown by its argument conversion, with a status code the TypeScript wrapper maps to `InvalidInputError`);
//! this module checks the values: numbers finite and in range, counts integral, f32 fields representable,
//! lengths bounded. Numbers arrive as f64 so that 1.5, −1 or NaN are reported instead of truncated.
//!
//! Typed arrays in: napi-rs hands over views of the JS memory; asynchronous operations copy them into Rust
//! `Vec`s here, on the JS thread, at call time — so JS may reuse its buffers as soon as the call returns and
//! worker threads never touch JS memory. Typed arrays out (`Float32Array::new(vec)`) are backed by the Rust
//! `Vec` itself: no copy into a JS buffer.
use crate::error::{Error, Result};
use crate::model::{
    AdamWParams, Finish, LossSpec, LossStats, ModelConfig, ParamInfo, SampleOutput, SampleRequest,
    Sequence, TrainStats,
};
use napi::bindgen_prelude::{Float32Array, Uint32Array};
use napi_derive::napi;

/// Most sequences in one call and most micro-batches in one step (the model enforces its own limits too).
pub const MAX_SEQS: usize = 1 << 16;
pub const MAX_MICRO_BATCHES: usize = 1 << 12;
/// Most checkpoint shards in one load, and the longest path.
pub const MAX_FILES: usize = 1024;
pub const MAX_PATH_BYTES: usize = 64 * 1024;
/// Most elements of a typed array crossing the boundary: 2^31 (8 GiB of f32).
pub const MAX_TYPED_ELEMS: usize = 1 << 31;

// ---- numbers ----

/// A finite number.
pub fn finite(x: f64, what: &str) -> Result<f64> {
    if !x.is_finite() {
        return Err(Error::invalid(format!("{what} must be finite, got {x}")));
    }
    Ok(x)
}

/// A finite number that fits f32 (rounded).
pub fn f32_of(x: f64, what: &str) -> Result<f32> {
    let y = finite(x, what)? as f32;
    if !y.is_finite() {
        return Err(Error::invalid(format!(
            "{what} is out of the f32 range: {x}"
        )));
    }
    Ok(y)
}

/// A non-negative integer ≤ `max`.
pub fn count(x: f64, what: &str, max: usize) -> Result<usize> {
    let x = finite(x, what)?;
    if x < 0.0 || x.fract() != 0.0 || x > max as f64 {
        return Err(Error::invalid(format!(
            "{what} must be an integer in [0, {max}], got {x}"
        )));
    }
    Ok(x as usize)
}

/// A non-negative integer seed or step (≤ 2^53, the exact-integer range of a JS number).
pub fn u53(x: f64, what: &str) -> Result<u64> {
    Ok(count(x, what, 1usize << 53)? as u64)
}

fn len_checked(n: usize, what: &str) -> Result<()> {
    if n > MAX_TYPED_ELEMS {
        return Err(Error::invalid(format!(
            "{what} has {n} elements, limit {MAX_TYPED_ELEMS}"
        )));
    }
    Ok(())
}

/// A copy of a Float32Array (values are not checked here; the model decides about NaN).
pub fn f32_vec(a: &Float32Array, what: &str) -> Result<Vec<f32>> {
    len_checked(a.len(), what)?;
    Ok(a.to_vec())
}

/// A copy of a Uint32Array.
pub fn u32_vec(a: &Uint32Array, what: &str) -> Result<Vec<u32>> {
    len_checked(a.len(), what)?;
    Ok(a.to_vec())
}

/// A file path (bounded length, no NUL).
pub fn path(p: String, what: &str) -> Result<std::path::PathBuf> {
    if p.len() > MAX_PATH_BYTES || p.contains('\0') {
        return Err(Error::invalid(format!(
            "{what} must be a path of at most {MAX_PATH_BYTES} bytes without NUL"
        )));
    }
    Ok(p.into())
}

pub fn paths(ps: Vec<String>, what: &str) -> Result<Vec<std::path::PathBuf>> {
    if ps.is_empty() || ps.len() > MAX_FILES {
        return Err(Error::invalid(format!(
            "{what} must list 1..={MAX_FILES} files, got {}",
            ps.len()
        )));
    }
    ps.into_iter()
        .enumerate()
        .map(|(i, p)| path(p, &format!("{what}[{i}]")))
        .collect()
}

// ---- configuration ----

/// Model configuration with Hugging Face field names, as in config.json.
#[napi(object)]
pub struct NativeConfig {
    #[napi(js_name = "hidden_size")]
    pub hidden_size: f64,
    #[napi(js_name = "intermediate_size")]
    pub intermediate_size: f64,
    #[napi(js_name = "num_hidden_layers")]
    pub num_hidden_layers: f64,
    #[napi(js_name = "num_attention_heads")]
    pub num_attention_heads: f64,
    #[napi(js_name = "num_key_value_heads")]
    pub num_key_value_heads: f64,
    #[napi(js_name = "vocab_size")]
    pub vocab_size: f64,
    #[napi(js_name = "rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[napi(js_name = "rope_theta")]
    pub rope_theta: f64,
    #[napi(js_name = "tie_word_embeddings")]
    pub tie_word_embeddings: bool,
    #[napi(js_name = "max_position_embeddings")]
    pub max_position_embeddings: f64,
    #[napi(js_name = "attention_bias")]
    pub attention_bias: bool,
}

/// A validated model configuration.
pub fn config(c: &NativeConfig) -> Result<ModelConfig> {
    let u = |x: f64, name: &str| count(x, &format!("config.{name}"), 1 << 40);
    let cfg = ModelConfig {
        hidden_size: u(c.hidden_size, "hidden_size")?,
        intermediate_size: u(c.intermediate_size, "intermediate_size")?,
        num_hidden_layers: u(c.num_hidden_layers, "num_hidden_layers")?,
        num_attention_heads: u(c.num_attention_heads, "num_attention_heads")?,
        num_key_value_heads: u(c.num_key_value_heads, "num_key_value_heads")?,
        vocab_size: u(c.vocab_size, "vocab_size")?,
        rms_norm_eps: f32_of(c.rms_norm_eps, "config.rms_norm_eps")?,
        rope_theta: f32_of(c.rope_theta, "config.rope_theta")?,
        tie_word_embeddings: c.tie_word_embeddings,
        max_position_embeddings: u(c.max_position_embeddings, "max_position_embeddings")?,
        attention_bias: c.attention_bias,
    };
    cfg.validate().map_err(Error::invalid)?;
    Ok(cfg)
}

impl From<&ModelConfig> for NativeConfig {
    fn from(c: &ModelConfig) -> Self {
        NativeConfig {
            hidden_size: c.hidden_size as f64,
            intermediate_size: c.intermediate_size as f64,
            num_hidden_layers: c.num_hidden_layers as f64,
            num_attention_heads: c.num_attention_heads as f64,
            num_key_value_heads: c.num_key_value_heads as f64,
            vocab_size: c.vocab_size as f64,
            rms_norm_eps: c.rms_norm_eps as f64,
            rope_theta: c.rope_theta as f64,
            tie_word_embeddings: c.tie_word_embeddings,
            max_position_embeddings: c.max_position_embeddings as f64,
            attention_bias: c.attention_bias,
        }
    }
}

// ---- inputs ----

/// A sequence to score or train on: tokens = prompt ++ response; GRPO fields per response token.
#[napi(object, object_to_js = false, use_nullable = true)]
pub struct NativeSequence {
    pub tokens: Uint32Array,
    pub prompt_len: f64,
    pub advantage: Option<f64>,
    pub old_logprobs: Option<Float32Array>,
    pub ref_logprobs: Option<Float32Array>,
}

pub fn sequence(s: &NativeSequence, what: &str) -> Result<Sequence> {
    let tokens = u32_vec(&s.tokens, &format!("{what}.tokens"))?;
    let prompt_len = count(s.prompt_len, &format!("{what}.promptLen"), tokens.len())?;
    let advantage = match s.advantage {
        Some(a) => f32_of(a, &format!("{what}.advantage"))?,
        None => 0.0,
    };
    let opt = |a: &Option<Float32Array>, name: &str| match a {
        Some(a) => f32_vec(a, &format!("{what}.{name}")),
        None => Ok(Vec::new()),
    };
    Ok(Sequence {
        tokens,
        prompt_len,
        advantage,
        old_logprobs: opt(&s.old_logprobs, "oldLogprobs")?,
        ref_logprobs: opt(&s.ref_logprobs, "refLogprobs")?,
    })
}

pub fn sequences(seqs: &[NativeSequence], what: &str) -> Result<Vec<Sequence>> {
    if seqs.len() > MAX_SEQS {
        return Err(Error::invalid(format!(
            "{what} has {} items, limit {MAX_SEQS}",
            seqs.len()
        )));
    }
    seqs.iter()
        .enumerate()
        .map(|(i, s)| sequence(s, &format!("{what}[{i}]")))
        .collect()
}

pub fn micro_batches(mbs: &[Vec<NativeSequence>]) -> Result<Vec<Vec<Sequence>>> {
    if mbs.len() > MAX_MICRO_BATCHES {
        return Err(Error::invalid(format!(
            "microBatches has {} items, limit {MAX_MICRO_BATCHES}",
            mbs.len()
        )));
    }
    mbs.iter()
        .enumerate()
        .map(|(i, mb)| sequences(mb, &format!("microBatches[{i}]")))
        .collect()
}

/// `{ kind: 'sft' } | { kind: 'grpo', clipEps, klCoef }`
#[napi(
    discriminant = "kind",
    discriminant_case = "lowercase",
    object_to_js = false
)]
pub enum NativeLoss {
    Sft,
    Grpo { clip_eps: f64, kl_coef: f64 },
}

pub fn loss(l: &NativeLoss) -> Result<LossSpec> {
    Ok(match *l {
        NativeLoss::Sft => LossSpec::Sft,
        NativeLoss::Grpo { clip_eps, kl_coef } => LossSpec::Grpo {
            clip_eps: f32_of(clip_eps, "loss.clipEps")?,
            kl_coef: f32_of(kl_coef, "loss.klCoef")?,
        },
    })
}

/// AdamW hyper-parameters (all required: the wrapper fills defaults).
#[napi(object, object_to_js = false)]
pub struct NativeAdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

pub fn adamw(o: &NativeAdamW) -> Result<AdamWParams> {
    Ok(AdamWParams {
        lr: f32_of(o.lr, "optimizer.lr")?,
        beta1: f32_of(o.beta1, "optimizer.beta1")?,
        beta2: f32_of(o.beta2, "optimizer.beta2")?,
        eps: f32_of(o.eps, "optimizer.eps")?,
        weight_decay: f32_of(o.weight_decay, "optimizer.weightDecay")?,
        max_grad_norm: f32_of(o.max_grad_norm, "optimizer.maxGradNorm")?,
    })
}

/// A sampling request; `stopTokens` may be null (none).
#[napi(object, object_to_js = false, use_nullable = true)]
pub struct NativeSampleRequest {
    pub prompts: Vec<Uint32Array>,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: f64,
    pub stop_tokens: Option<Uint32Array>,
    pub seed: f64,
}

pub fn sample_request(r: &NativeSampleRequest) -> Result<SampleRequest> {
    if r.prompts.len() > MAX_SEQS {
        return Err(Error::invalid(format!(
            "request.prompts has {} items, limit {MAX_SEQS}",
            r.prompts.len()
        )));
    }
    let prompts = r
        .prompts
        .iter()
        .enumerate()
        .map(|(i, p)| u32_vec(p, &format!("request.prompts[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    Ok(SampleRequest {
        prompts,
        temperature: f32_of(r.temperature, "request.temperature")?,
        top_p: f32_of(r.top_p, "request.topP")?,
        max_new_tokens: count(r.max_new_tokens, "request.maxNewTokens", 1 << 20)?,
        stop_tokens: match &r.stop_tokens {
            Some(s) => u32_vec(s, "request.stopTokens")?,
            None => Vec::new(),
        },
        seed: u53(r.seed, "request.seed")?,
    })
}

// ---- outputs ----

/// What `trainStep` reports.
#[napi(object, object_from_js = false)]
pub struct NativeTrainStats {
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub tokens: f64,
}

impl From<TrainStats> for NativeTrainStats {
    fn from(s: TrainStats) -> Self {
        NativeTrainStats {
            loss: s.loss as f64,
            kl: s.kl as f64,
            clip_fraction: s.clip_fraction as f64,
            grad_norm: s.grad_norm as f64,
            tokens: s.tokens as f64,
        }
    }
}

/// Unnormalised sums of one `accumulateGrads` call.
#[napi(object, object_from_js = false)]
pub struct NativeLossSums {
    pub loss_sum: f64,
    pub kl_sum: f64,
    pub clipped: f64,
    pub tokens: f64,
}

impl From<LossStats> for NativeLossSums {
    fn from(s: LossStats) -> Self {
        NativeLossSums {
            loss_sum: s.loss_sum,
            kl_sum: s.kl_sum,
            clipped: s.clipped as f64,
            tokens: s.tokens as f64,
        }
    }
}

/// Why a sampled sequence ended.
#[napi(string_enum = "lowercase")]
pub enum NativeFinish {
    Stop,
    Length,
}

/// One sampled continuation.
#[napi(object, object_from_js = false)]
pub struct NativeSample {
    pub tokens: Uint32Array,
    pub logprobs: Float32Array,
    pub finish: NativeFinish,
}

impl From<SampleOutput> for NativeSample {
    fn from(o: SampleOutput) -> Self {
        NativeSample {
            tokens: Uint32Array::new(o.tokens),
            logprobs: Float32Array::new(o.logprobs),
            finish: match o.finish {
                Finish::Stop => NativeFinish::Stop,
                Finish::Length => NativeFinish::Length,
            },
        }
    }
}

/// One tensor of the flat parameter buffer.
#[napi(object, object_from_js = false)]
pub struct NativeParamInfo {
    pub name: String,
    pub shape: Vec<f64>,
    pub offset: f64,
    pub length: f64,
}

impl From<&ParamInfo> for NativeParamInfo {
    fn from(p: &ParamInfo) -> Self {
        NativeParamInfo {
            name: p.name.clone(),
            shape: p.shape.iter().map(|&d| d as f64).collect(),
            offset: p.offset as f64,
            length: p.len as f64,
        }
    }
}

/// What `modelInfo` reports (immutable facts: readable after `freeModel` too).
#[napi(object, object_from_js = false)]
pub struct NativeModelInfo {
    pub id: f64,
    pub config: NativeConfig,
    pub num_params: f64,
    pub frozen: bool,
    pub closed: bool,
    pub params: Vec<NativeParamInfo>,
}

/// AdamW moments and step count.
#[napi(object, object_from_js = false)]
pub struct NativeOptimizerState {
    pub m: Float32Array,
    pub v: Float32Array,
    pub step: f64,
}

/// The `device` argument: absent or null = `cpu`; otherwise `cpu` | `cuda:N` (at most 64 characters).
pub fn device(d: Option<&str>) -> Result<crate::cuda::Device> {
    match d {
        None => Ok(crate::cuda::Device::Cpu),
        Some(s) if s.len() > 64 => Err(Error::invalid(format!(
            "device is longer than 64 characters ({})",
            s.len()
        ))),
        Some(s) => crate::cuda::Device::parse(s),
    }
}
