//! Losses on top of the logits: per-token log-probs of response tokens, supervised cross-entropy and the GRPO
//! loss of docs/method.md "The GRPO update", fused with the softmax gradient (∂L/∂logits written over the logits).
//!
//! Conventions. Sequence b of a padded batch (B, T) holds tokens[0..len] = prompt ++ response with prompt_len ≥ 1;
//! response token r (0-based) sits at position prompt_len + r and is predicted by row b·T + prompt_len + r − 1.
//! The step loss is the TOKEN-LEVEL MEAN over every response token of every micro-batch of the step:
//!   L = (1/N_tok) Σ_tokens ℓ_t, so each micro-batch adds ∂ℓ_t/∂θ · scale with scale = 1/N_tok.
//! SFT:  ℓ_t = −logπ(y_t).
//! GRPO: ρ_t = exp(logπ − logπ_old), ℓ_t = −min(ρ_t·A, clip(ρ_t, 1−ε, 1+ε)·A) + β·(exp(−Δ_t) − 1 + Δ_t),
//!       Δ_t = logπ − logπ_ref (k3 estimator). Log-ratios are clamped to ±20 before exp (finite ρ).
//!   ∂ℓ_t/∂logπ = −ρ·A when the unclipped term is the minimum, else 0; plus β·(1 − exp(−Δ)).
//! With ℓ a function of logπ(y_t) = z_y − logsumexp(z): ∂ℓ/∂z = ∂ℓ/∂logπ · (onehot(y) − softmax(z)).

use crate::backend::ops::{logsumexp, softmax_grad_row};
use crate::backend::threads::par_rows;

/// Which loss a training step uses.
#[derive(Clone, Debug, PartialEq)]
pub enum LossSpec {
    Sft,
    Grpo { clip_eps: f32, kl_coef: f32 },
}

/// Sums over the tokens of a micro-batch (divide by `tokens` for means).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    pub loss_sum: f64,
    pub kl_sum: f64,
    pub clipped: usize,
    pub tokens: usize,
}

impl LossStats {
    pub fn add(&mut self, o: &LossStats) {
        self.loss_sum += o.loss_sum;
        self.kl_sum += o.kl_sum;
        self.clipped += o.clipped;
        self.tokens += o.tokens;
    }
}

const LOG_RATIO_CLAMP: f32 = 20.0;

/// Per-token loss value, KL value, clipped flag and ∂ℓ/∂logπ for one response token.
pub fn token_loss(
    spec: &LossSpec,
    logp: f32,
    advantage: f32,
    old: f32,
    reference: f32,
) -> (f64, f64, bool, f32) {
    match *spec {
        LossSpec::Sft => (-(logp as f64), 0.0, false, -1.0),
        LossSpec::Grpo { clip_eps, kl_coef } => {
            let lr = (logp - old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
            let ratio = lr.exp();
            let surr1 = ratio * advantage;
            let clipped_ratio = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps);
            let surr2 = clipped_ratio * advantage;
            let clipped = surr2 < surr1;
            let pg = -surr1.min(surr2);
            let dpg = if clipped { 0.0 } else { -ratio * advantage };
            let delta = (logp - reference).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
            let e = (-delta).exp();
            let k3 = e - 1.0 + delta;
            let loss = pg as f64 + kl_coef as f64 * k3 as f64;
            (loss, k3 as f64, clipped, dpg + kl_coef * (1.0 - e))
        }
    }
}

/// One response token in the padded logits: its row and target id.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub row: usize,
    pub token: u32,
}

/// log-softmax of `logits` (rows of width v) at each target: logπ(target | row).
pub fn gather_logprobs(logits: &[f32], v: usize, targets: &[Target]) -> Vec<f32> {
    let mut out = vec![0.0f32; targets.len()];
    par_rows(&mut out, 1, 64, |i0, blk| {
        for (k, o) in blk.iter_mut().enumerate() {
            let tg = targets[i0 + k];
            let row = &logits[tg.row * v..(tg.row + 1) * v];
            *o = row[tg.token as usize] - logsumexp(row);
        }
    });
    out
}

/// Overwrites logits (rows of width v) with ∂L/∂logits: coef_k·(onehot − softmax) on target rows, 0 elsewhere.
/// `coef[k]` is ∂L/∂logπ for `targets[k]`; every row is the target of at most one token.
pub fn write_dlogits(logits: &mut [f32], v: usize, targets: &[Target], coef: &[f32]) {
    let rows = logits.len() / v;
    let mut row_k = vec![usize::MAX; rows];
    for (k, tg) in targets.iter().enumerate() {
        row_k[tg.row] = k;
    }
    par_rows(logits, v, 32, |r0, blk| {
        for (i, row) in blk.chunks_exact_mut(v).enumerate() {
            let k = row_k[r0 + i];
            if k == usize::MAX {
                row.iter_mut().for_each(|x| *x = 0.0);
                continue;
            }
            softmax_grad_row(row, targets[k].token as usize, coef[k]);
        }
    });
}
