//! The Qwen2/Llama decoder the learner trains and the samplers run: configuration, the flat parameter and
//! gradient buffers, forward (logits, response log-probs), backward for the SFT and GRPO losses, gradient
//! accumulation over micro-batches, global grad-norm clipping, AdamW, and KV-cache sampling.
//!
//! Plain Rust over `crate::backend`; no Node types. Every entry point validates its input and returns
//! `Err(String)` (token id ≥ vocab, NaN/inf, empty batch, sequence longer than max_position_embeddings, wrong
//! lengths, frozen model) instead of panicking. A `Model` is `Send` and owns all its state, so several can live in
//! one process.

pub mod config;
pub mod dp;
pub mod forward;
pub mod loss;
pub mod params;
pub mod sample;
#[cfg(test)]
mod tests;

pub use config::ModelConfig;
pub use loss::{LossSpec, LossStats};
pub use params::{ParamInfo, Rng};
pub use sample::{Finish, SampleOutput, SampleRequest};

use crate::backend::ops;
use forward::Acts;
use loss::Target;
use params::Offsets;

/// One training or scoring sequence: tokens = prompt ++ response. For GRPO, `old_logprobs` and
/// `ref_logprobs` hold one value per response token (`ref_logprobs` may be empty when kl_coef = 0); for SFT
/// and scoring both are ignored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    pub advantage: f32,
    pub old_logprobs: Vec<f32>,
    pub ref_logprobs: Vec<f32>,
}

impl Sequence {
    pub fn response_len(&self) -> usize {
        self.tokens.len().saturating_sub(self.prompt_len)
    }
}

/// AdamW hyper-parameters for one optimiser step (the caller sets lr per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Global grad-norm clip; 0 disables clipping.
    pub max_grad_norm: f32,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

/// What a training step reports: token-mean loss and k3 KL, the fraction of tokens whose PPO ratio was
/// clipped, the global grad norm before clipping, and the number of response tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainStats {
    pub loss: f32,
    pub kl: f32,
    pub clip_fraction: f32,
    pub grad_norm: f32,
    pub tokens: usize,
}

/// Most sequences per forward chunk when scoring (bounds activation memory).
pub const SCORE_CHUNK: usize = 16;
/// Most sequences in one call (training micro-batch, scoring or sampling).
pub const MAX_BATCH: usize = 1 << 16;

/// Gradients and AdamW state of a trainable model (same layout as the parameters). Allocated on the first
/// training call, so a model that only samples or scores (e.g. a loaded checkpoint serving rollouts) holds its
/// weights and nothing else.
struct TrainState {
    grads: Vec<f32>,
    adam_m: Vec<f32>,
    adam_v: Vec<f32>,
    step: u64,
    /// The parameter range the moments cover: 0..n, or this rank's slice under ZeRO-1 (`dp.rs`).
    shard: std::ops::Range<usize>,
}

impl TrainState {
    fn new(n: usize) -> TrainState {
        TrainState {
            grads: vec![0.0; n],
            adam_m: vec![0.0; n],
            adam_v: vec![0.0; n],
            step: 0,
            shard: 0..n,
        }
    }
}

pub struct Model {
    cfg: ModelConfig,
    table: Vec<ParamInfo>,
    off: Offsets,
    params: Vec<f32>,
    /// None until the first training call (and always for a frozen copy).
    train: Option<TrainState>,
    frozen: bool,
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    acts: Acts,
}

fn check_finite(name: &str, xs: &[f32]) -> Result<(), String> {
    match first_non_finite(xs) {
        Some(i) => Err(format!(
            "{name}: value at index {i} is not finite ({})",
            xs[i]
        )),
        None => Ok(()),
    }
}

/// Err for hyper-parameters AdamW cannot use.
fn check_adamw(o: &AdamWParams) -> Result<(), String> {
    let ok = o.lr.is_finite()
        && o.lr >= 0.0
        && (0.0..1.0).contains(&o.beta1)
        && (0.0..1.0).contains(&o.beta2)
        && o.eps.is_finite()
        && o.eps > 0.0
        && o.weight_decay.is_finite()
        && o.weight_decay >= 0.0
        && o.max_grad_norm.is_finite()
        && o.max_grad_norm >= 0.0;
    if ok {
        Ok(())
    } else {
        Err(format!("invalid AdamW parameters: {o:?}"))
    }
}

/// The clip factor for a global gradient norm.
fn clip_scale(o: &AdamWParams, norm: f32) -> f32 {
    if o.max_grad_norm > 0.0 && norm > o.max_grad_norm {
        o.max_grad_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// The AdamW constants of step number `step` (1-based, already incremented).
fn adamw_step(o: &AdamWParams, step: u64, gscale: f32) -> ops::AdamWStep {
    ops::AdamWStep {
        lr: o.lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        bc1: 1.0 - o.beta1.powi(step.min(1 << 30) as i32),
        bc2: 1.0 - o.beta2.powi(step.min(1 << 30) as i32),
        gscale,
    }
}

/// Index of the first NaN or ±inf in `xs` (scanned in parallel blocks: parameter buffers reach GBs).
pub fn first_non_finite(xs: &[f32]) -> Option<usize> {
    use crate::backend::threads::{num_threads, par_map, split_range};
    let parts = split_range(xs.len(), num_threads(), 1 << 16);
    let found = par_map(parts.len(), |k| {
        let (a, b) = parts[k];
        xs[a..b].iter().position(|x| !x.is_finite()).map(|i| a + i)
    });
    found.into_iter().flatten().min()
}

impl Model {
    /// A model initialised from `seed` (deterministic: same config + seed → same bytes).
    pub fn new(cfg: ModelConfig, seed: u64) -> Result<Model, String> {
        cfg.validate()?;
        let (table, off) = params::layout(&cfg);
        debug_assert_eq!(off.total, cfg.num_params());
        let mut p = vec![0.0f32; off.total];
        params::init(&cfg, &table, seed, &mut p);
        Model::from_params(cfg, p)
    }

    /// A trainable model with the given flat parameters (layout: `params.rs`; length and finiteness checked),
    /// without random initialisation — e.g. a checkpoint read by `crate::checkpoint::load_model`.
    pub fn from_params(cfg: ModelConfig, p: Vec<f32>) -> Result<Model, String> {
        check_finite("from_params", &p)?;
        Model::from_finite_params(cfg, p)
    }

    /// `from_params` for a buffer the caller has already checked finite (the checkpoint reader checks each
    /// block as it converts it, so a 2 GB load does not scan the buffer twice).
    pub(crate) fn from_finite_params(cfg: ModelConfig, p: Vec<f32>) -> Result<Model, String> {
        cfg.validate()?;
        let (table, off) = params::layout(&cfg);
        if p.len() != off.total {
            return Err(format!(
                "from_params: got {} values, the configuration has {}",
                p.len(),
                off.total
            ));
        }
        debug_assert!(first_non_finite(&p).is_none());
        let (rope_cos, rope_sin) =
            ops::rope_tables(cfg.max_position_embeddings, cfg.head_dim(), cfg.rope_theta);
        Ok(Model {
            params: p,
            train: None,
            cfg,
            table,
            off,
            frozen: false,
            rope_cos,
            rope_sin,
            acts: Acts::default(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    pub fn param_table(&self) -> &[ParamInfo] {
        &self.table
    }
    pub fn num_params(&self) -> usize {
        self.params.len()
    }
    /// The flat parameter buffer (layout: `params.rs`).
    pub fn params(&self) -> &[f32] {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    /// Replaces all parameters (length and finiteness checked).
    pub fn set_params(&mut self, p: &[f32]) -> Result<(), String> {
        self.check_new_params(p)?;
        self.params.copy_from_slice(p);
        Ok(())
    }
    /// Replaces all parameters by `p` without copying (length and finiteness checked).
    pub fn replace_params(&mut self, p: Vec<f32>) -> Result<(), String> {
        self.check_new_params(&p)?;
        self.params = p;
        Ok(())
    }
    /// `replace_params` for a buffer the caller has already checked finite (see `from_finite_params`).
    pub(crate) fn replace_finite_params(&mut self, p: Vec<f32>) -> Result<(), String> {
        if p.len() != self.params.len() {
            return Err(format!(
                "set_params: got {} values, the model has {}",
                p.len(),
                self.params.len()
            ));
        }
        debug_assert!(first_non_finite(&p).is_none());
        self.params = p;
        Ok(())
    }
    fn check_new_params(&self, p: &[f32]) -> Result<(), String> {
        if p.len() != self.params.len() {
            return Err(format!(
                "set_params: got {} values, the model has {}",
                p.len(),
                self.params.len()
            ));
        }
        check_finite("set_params", p)
    }

    /// Whether the gradient and AdamW buffers exist (they are allocated by the first training call).
    pub fn has_train_buffers(&self) -> bool {
        self.train.is_some()
    }
    /// The training state, allocated on first use; Err for a frozen copy.
    fn train_state(&mut self) -> Result<&mut TrainState, String> {
        self.check_trainable()?;
        let n = self.params.len();
        Ok(self.train.get_or_insert_with(|| TrainState::new(n)))
    }
    /// The flat gradient buffer (same layout as params; Err for a frozen model).
    pub fn grads(&mut self) -> Result<&[f32], String> {
        Ok(&self.train_state()?.grads)
    }
    pub fn grads_mut(&mut self) -> Result<&mut [f32], String> {
        Ok(&mut self.train_state()?.grads)
    }
    /// Replaces all gradients (e.g. after an all-reduce).
    pub fn set_grads(&mut self, g: &[f32]) -> Result<(), String> {
        let n = self.params.len();
        if g.len() != n {
            self.check_trainable()?;
            return Err(format!(
                "set_grads: got {} values, the model has {n}",
                g.len()
            ));
        }
        check_finite("set_grads", g)?;
        self.train_state()?.grads.copy_from_slice(g);
        Ok(())
    }
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// AdamW moments and step count (Err for a frozen model).
    pub fn optimizer_state(&mut self) -> Result<(&[f32], &[f32], u64), String> {
        let n = self.params.len();
        let t = self.train_state()?;
        if t.shard != (0..n) {
            return Err(dp::sharded_message(&t.shard));
        }
        Ok((&t.adam_m, &t.adam_v, t.step))
    }
    pub fn set_optimizer_state(&mut self, m: &[f32], v: &[f32], step: u64) -> Result<(), String> {
        self.check_trainable()?;
        let n = self.params.len();
        if m.len() != n || v.len() != n {
            return Err(format!(
                "set_optimizer_state: moments must have {n} values (got {} and {})",
                m.len(),
                v.len()
            ));
        }
        check_finite("optimizer m", m)?;
        check_finite("optimizer v", v)?;
        if let Some(i) = v.iter().position(|&x| x < 0.0) {
            return Err(format!("optimizer v: negative second moment at index {i}"));
        }
        let t = self.train_state()?;
        t.adam_m = m.to_vec();
        t.adam_v = v.to_vec();
        t.step = step;
        t.shard = 0..n;
        Ok(())
    }

    /// A frozen copy (reference model): same parameters, no gradient or optimiser buffers; training calls on it
    /// return Err.
    pub fn clone_frozen(&self) -> Model {
        Model {
            cfg: self.cfg.clone(),
            table: self.table.clone(),
            off: self.off.clone(),
            params: self.params.clone(),
            train: None,
            frozen: true,
            rope_cos: self.rope_cos.clone(),
            rope_sin: self.rope_sin.clone(),
            acts: Acts::default(),
        }
    }

    /// Frees the activation buffers kept between calls.
    pub fn release_buffers(&mut self) {
        self.acts.release();
    }

    fn check_trainable(&self) -> Result<(), String> {
        if self.frozen {
            Err("model is frozen (a reference copy): it has no gradients or optimiser state".into())
        } else {
            Ok(())
        }
    }

    fn check_tokens(&self, what: &str, toks: &[u32]) -> Result<(), String> {
        let v = self.cfg.vocab_size;
        match toks.iter().position(|&t| t as usize >= v) {
            Some(i) => Err(format!(
                "{what}: token id {} at index {i} is out of range (vocab_size {v})",
                toks[i]
            )),
            None => Ok(()),
        }
    }

    fn check_sequences(&self, seqs: &[Sequence], loss: Option<&LossSpec>) -> Result<(), String> {
        if seqs.is_empty() {
            return Err("empty batch: at least one sequence is required".into());
        }
        if seqs.len() > MAX_BATCH {
            return Err(format!(
                "batch of {} sequences exceeds the limit {MAX_BATCH}",
                seqs.len()
            ));
        }
        let maxp = self.cfg.max_position_embeddings;
        for (k, s) in seqs.iter().enumerate() {
            let n = s.tokens.len();
            if n == 0 {
                return Err(format!("sequence {k}: no tokens"));
            }
            if n > maxp {
                return Err(format!(
                    "sequence {k}: {n} tokens exceed max_position_embeddings {maxp}"
                ));
            }
            if s.prompt_len == 0 || s.prompt_len > n {
                return Err(format!(
                    "sequence {k}: prompt_len {} must be in 1..={n}",
                    s.prompt_len
                ));
            }
            self.check_tokens(&format!("sequence {k}"), &s.tokens)?;
            if let Some(LossSpec::Grpo { kl_coef, .. }) = loss {
                let r = s.response_len();
                if !s.advantage.is_finite() {
                    return Err(format!(
                        "sequence {k}: advantage {} is not finite",
                        s.advantage
                    ));
                }
                if s.old_logprobs.len() != r {
                    return Err(format!(
                        "sequence {k}: {} old log-probs for {r} response tokens",
                        s.old_logprobs.len()
                    ));
                }
                check_finite(&format!("sequence {k} old_logprobs"), &s.old_logprobs)?;
                let ref_ok =
                    s.ref_logprobs.len() == r || (s.ref_logprobs.is_empty() && *kl_coef == 0.0);
                if !ref_ok {
                    return Err(format!(
                        "sequence {k}: {} reference log-probs for {r} response tokens",
                        s.ref_logprobs.len()
                    ));
                }
                check_finite(&format!("sequence {k} ref_logprobs"), &s.ref_logprobs)?;
            }
        }
        Ok(())
    }

    fn check_loss(loss: &LossSpec) -> Result<(), String> {
        if let LossSpec::Grpo { clip_eps, kl_coef } = *loss {
            if !(clip_eps.is_finite() && clip_eps > 0.0 && clip_eps < 1.0) {
                return Err(format!("GRPO clip_eps {clip_eps} must be in (0, 1)"));
            }
            if !(kl_coef.is_finite() && kl_coef >= 0.0) {
                return Err(format!("GRPO kl_coef {kl_coef} must be finite and ≥ 0"));
            }
        }
        Ok(())
    }

    /// Pads `seqs` into (B, T) tokens (pad id 0) and lists the response-token targets.
    fn pack(seqs: &[Sequence]) -> (Vec<u32>, usize, Vec<Target>) {
        let t = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
        let mut toks = vec![0u32; seqs.len() * t];
        let mut targets = Vec::new();
        for (b, s) in seqs.iter().enumerate() {
            toks[b * t..b * t + s.tokens.len()].copy_from_slice(&s.tokens);
            for pos in s.prompt_len..s.tokens.len() {
                targets.push(Target {
                    row: b * t + pos - 1,
                    token: s.tokens[pos],
                });
            }
        }
        (toks, t, targets)
    }

    fn run_forward(&mut self, tokens: &[u32], b: usize, t: usize) {
        self.acts.prepare(&self.cfg, b, t);
        forward::forward(
            &self.cfg,
            &self.off,
            &self.params,
            (&self.rope_cos, &self.rope_sin),
            &mut self.acts,
            tokens,
        );
    }

    /// Logits (B, T, V) for a (B, T) block of token ids.
    pub fn forward_logits(
        &mut self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>, String> {
        if batch == 0 || seq == 0 {
            return Err("forward: empty batch".into());
        }
        if batch > MAX_BATCH {
            return Err(format!(
                "forward: batch {batch} exceeds the limit {MAX_BATCH}"
            ));
        }
        if seq > self.cfg.max_position_embeddings {
            return Err(format!(
                "forward: {seq} positions exceed max_position_embeddings {}",
                self.cfg.max_position_embeddings
            ));
        }
        if batch.checked_mul(seq) != Some(tokens.len()) {
            return Err(format!(
                "forward: {} tokens do not form a {batch}×{seq} block",
                tokens.len()
            ));
        }
        self.check_tokens("forward", tokens)?;
        self.run_forward(tokens, batch, seq);
        Ok(self.acts.logits.clone())
    }

    /// Log-probs of every response token (tokens[prompt_len..]) of every sequence, under this model. Sequences
    /// are right-padded and run in chunks of SCORE_CHUNK.
    pub fn logprobs(&mut self, seqs: &[Sequence]) -> Result<Vec<Vec<f32>>, String> {
        self.check_sequences(seqs, None)?;
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(SCORE_CHUNK) {
            let (toks, t, targets) = Self::pack(chunk);
            self.run_forward(&toks, chunk.len(), t);
            let lp = loss::gather_logprobs(&self.acts.logits, self.cfg.vocab_size, &targets);
            let mut k = 0;
            for s in chunk {
                let r = s.response_len();
                out.push(lp[k..k + r].to_vec());
                k += r;
            }
        }
        Ok(out)
    }

    /// Sets every gradient to 0 (allocating the training buffers on first use; Err for a frozen model).
    pub fn zero_grads(&mut self) -> Result<(), String> {
        self.train_state()?.grads.iter_mut().for_each(|g| *g = 0.0);
        Ok(())
    }

    /// Forward + backward of one micro-batch, ADDING scale·∂(Σ_tokens ℓ_t)/∂θ into the gradients. Returns the
    /// unscaled sums (loss, KL, clipped count, tokens). `scale` is 1/N_tok of the whole step for a token mean.
    pub fn accumulate_grads(
        &mut self,
        batch: &[Sequence],
        loss: &LossSpec,
        scale: f32,
    ) -> Result<LossStats, String> {
        self.check_trainable()?;
        Self::check_loss(loss)?;
        self.check_sequences(batch, Some(loss))?;
        if !scale.is_finite() {
            return Err(format!("accumulate_grads: scale {scale} is not finite"));
        }
        let (toks, t, targets) = Self::pack(batch);
        self.run_forward(&toks, batch.len(), t);
        let v = self.cfg.vocab_size;
        let lp = loss::gather_logprobs(&self.acts.logits, v, &targets);
        let mut st = LossStats {
            tokens: targets.len(),
            ..Default::default()
        };
        let mut coef = Vec::with_capacity(lp.len());
        let mut k = 0;
        for s in batch {
            for r in 0..s.response_len() {
                let (old, rf) = match loss {
                    LossSpec::Sft => (0.0, 0.0),
                    LossSpec::Grpo { .. } => (
                        s.old_logprobs[r],
                        s.ref_logprobs.get(r).copied().unwrap_or(lp[k]),
                    ),
                };
                let (l, kl, clipped, d) = loss::token_loss(loss, lp[k], s.advantage, old, rf);
                st.loss_sum += l;
                st.kl_sum += kl;
                st.clipped += clipped as usize;
                coef.push(d * scale);
                k += 1;
            }
        }
        loss::write_dlogits(&mut self.acts.logits, v, &targets, &coef);
        let n = self.params.len();
        let grads = &mut self.train.get_or_insert_with(|| TrainState::new(n)).grads;
        forward::backward(
            &self.cfg,
            &self.off,
            &self.params,
            (&self.rope_cos, &self.rope_sin),
            &mut self.acts,
            grads,
        );
        Ok(st)
    }

    /// Global L2 norm of the gradients (0 before any training call).
    pub fn grad_norm(&self) -> f32 {
        self.train
            .as_ref()
            .map_or(0.0, |t| ops::sum_squares(&t.grads).sqrt() as f32)
    }

    /// Clips the gradients to `max_grad_norm` (global L2 norm) and applies one AdamW step (weight decay on
    /// matrices only — norms and biases are not decayed). Returns the pre-clip norm. A non-finite norm is an
    /// error and leaves the parameters untouched.
    pub fn clip_and_step(&mut self, opt: &AdamWParams) -> Result<f32, String> {
        self.check_trainable()?;
        let o = *opt;
        check_adamw(&o)?;
        let norm = self.grad_norm();
        if !norm.is_finite() {
            return Err(format!(
                "gradient norm is not finite ({norm}); step skipped"
            ));
        }
        let gscale = clip_scale(&o, norm);
        let n = self.params.len();
        if let Some(t) = self.train.as_ref().filter(|t| t.shard != (0..n)) {
            return Err(dp::sharded_message(&t.shard));
        }
        let t = self.train.get_or_insert_with(|| TrainState::new(n));
        t.step += 1;
        let st = adamw_step(&o, t.step, gscale);
        for p in &self.table {
            let r = p.offset..p.offset + p.len;
            let wd = if p.shape.len() >= 2 {
                o.weight_decay
            } else {
                0.0
            };
            ops::adamw(
                &mut self.params[r.clone()],
                &t.grads[r.clone()],
                &mut t.adam_m[r.clone()],
                &mut t.adam_v[r],
                st,
                wd,
            );
        }
        Ok(norm)
    }

    /// One optimiser step over micro-batches: zero grads, accumulate every micro-batch with scale 1/N_tok
    /// (token-level mean over the whole step), clip, AdamW.
    pub fn train_step(
        &mut self,
        micro_batches: &[Vec<Sequence>],
        loss: &LossSpec,
        opt: &AdamWParams,
    ) -> Result<TrainStats, String> {
        self.check_trainable()?;
        Self::check_loss(loss)?;
        if micro_batches.is_empty() {
            return Err("train_step: no micro-batches".into());
        }
        for mb in micro_batches {
            self.check_sequences(mb, Some(loss))?;
        }
        let total: usize = micro_batches
            .iter()
            .flat_map(|mb| mb.iter())
            .map(|s| s.response_len())
            .sum();
        if total == 0 {
            return Err("train_step: no response tokens in the batch".into());
        }
        self.zero_grads()?;
        let scale = 1.0 / total as f32;
        let mut st = LossStats::default();
        for mb in micro_batches {
            let s = self.accumulate_grads(mb, loss, scale)?;
            st.add(&s);
        }
        let grad_norm = self.clip_and_step(opt)?;
        let n = st.tokens as f64;
        Ok(TrainStats {
            loss: (st.loss_sum / n) as f32,
            kl: (st.kl_sum / n) as f32,
            clip_fraction: (st.clipped as f64 / n) as f32,
            grad_norm,
            tokens: st.tokens,
        })
    }
}
