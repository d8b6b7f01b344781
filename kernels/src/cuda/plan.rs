//! Device memory planning: the bytes a model needs on a GPU for training (parameters in FP32 master precision
//! and their BF16 copy for the matrix products, gradients, AdamW moments, activations with or without
//! recomputation, the logits, the cuBLASLt workspace) and for sampling (weights and the KV cache), so a
//! configuration that cannot fit is refused before anything is allocated, and `TrainStats` can report the plan
//! beside the measured peak. The activation terms follow the kernels of `kernels/cuda` and what the backward
//! pass reads (listed per term below).
use crate::cuda::launch::Act;
use crate::model::ModelConfig;

/// The cuBLASLt workspace (NVIDIA recommends 32 MiB on Hopper).
pub const CUBLASLT_WORKSPACE: u64 = 32 << 20;

/// A training step's shape and options.
#[derive(Clone, Copy, Debug)]
pub struct TrainShape {
    /// Sequences per micro-batch and their (padded) length.
    pub batch: usize,
    pub seq: usize,
    /// Activation precision (BF16 for speed, F32 for parity).
    pub act: Act,
    /// Keep only each layer's input and recompute the layer in the backward pass.
    pub recompute: bool,
}

/// Bytes of each part of a step's device memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainPlan {
    pub params_f32: u64,
    /// BF16 copy of the weights the matrix products read (0 in F32 mode).
    pub params_act: u64,
    pub grads: u64,
    pub adam_m: u64,
    pub adam_v: u64,
    /// Activations kept for the backward pass across all layers.
    pub saved_activations: u64,
    /// One layer's activations and gradients while its backward runs (recomputed ones included).
    pub layer_working: u64,
    /// Logits and their gradient (in place) plus the final norm's input, for the whole micro-batch.
    pub logits: u64,
    pub workspace: u64,
}

impl TrainPlan {
    pub fn persistent(&self) -> u64 {
        self.params_f32 + self.params_act + self.grads + self.adam_m + self.adam_v
    }
    /// The peak: persistent state, saved activations, and the larger of the logits phase and one layer's
    /// backward (they are not live at the same time: the logits' gradient is folded into the last hidden state
    /// before the layers' backward starts), plus the workspace.
    pub fn peak(&self) -> u64 {
        self.persistent()
            + self.saved_activations
            + self.logits.max(self.layer_working)
            + self.workspace
    }
}

/// Bytes per token of one layer's activations that the backward pass reads (without recomputation):
/// residual input (F32) and RMSNorm rstd, the normed input, q/k/v after RoPE, the attention output and its
/// log-sum-exp per head, the second residual (F32) and rstd, its normed input, gate, up and SwiGLU output.
pub fn layer_saved_per_token(cfg: &ModelConfig, act: Act) -> u64 {
    let (h, i) = (cfg.hidden_size as u64, cfg.intermediate_size as u64);
    let d = cfg.head_dim() as u64;
    let (hq, hkv) = (
        cfg.num_attention_heads as u64,
        cfg.num_key_value_heads as u64,
    );
    let a = act.bytes() as u64;
    let f = 4u64;
    (h * f + f)
        + h * a
        + (hq * d + 2 * hkv * d) * a
        + hq * d * a
        + hq * f
        + (h * f + f)
        + h * a
        + 2 * i * a
        + i * a
}

/// Bytes per token of one layer's gradients in flight during its backward (FP32): the residual gradient
/// (in and out), dq/dk/dv, the attention output's gradient, and dgate/dup plus the SwiGLU output's gradient.
pub fn layer_grads_per_token(cfg: &ModelConfig) -> u64 {
    let (h, i) = (cfg.hidden_size as u64, cfg.intermediate_size as u64);
    let d = cfg.head_dim() as u64;
    let (hq, hkv) = (
        cfg.num_attention_heads as u64,
        cfg.num_key_value_heads as u64,
    );
    4 * (2 * h + (hq * d + 2 * hkv * d) + hq * d + 3 * i) + 4 * hq // + D row terms of attention
}

pub fn train_plan(cfg: &ModelConfig, s: TrainShape) -> TrainPlan {
    let n = cfg.num_params() as u64;
    let tokens = (s.batch * s.seq) as u64;
    let layers = cfg.num_hidden_layers as u64;
    let h = cfg.hidden_size as u64;
    let a = s.act.bytes() as u64;
    let per_layer = layer_saved_per_token(cfg, s.act);
    let saved_activations = if s.recompute {
        layers * tokens * h * 4
    } else {
        layers * tokens * per_layer
    };
    let layer_working =
        tokens * (layer_grads_per_token(cfg) + if s.recompute { per_layer } else { 0 });
    // logits (tokens x vocab) in the activation type, their gradient written in place; lse, log-probs and
    // the loss coefficients per token; the final norm's input (F32) and output
    let logits = tokens * cfg.vocab_size as u64 * a + tokens * 3 * 4 + tokens * h * (4 + a);
    TrainPlan {
        params_f32: 4 * n,
        params_act: if s.act == Act::Bf16 { 2 * n } else { 0 },
        grads: 4 * n,
        adam_m: 4 * n,
        adam_v: 4 * n,
        saved_activations,
        layer_working,
        logits,
        workspace: CUBLASLT_WORKSPACE,
    }
}

/// Bytes of a sampling model: the weights in the activation type (a frozen copy holds no FP32 master) and the
/// KV cache for `batch` sequences of up to `max_len` tokens, plus one step's logits.
pub fn sample_bytes(cfg: &ModelConfig, act: Act, batch: usize, max_len: usize) -> u64 {
    let a = act.bytes() as u64;
    let kv = 2
        * cfg.num_hidden_layers as u64
        * cfg.num_key_value_heads as u64
        * cfg.head_dim() as u64
        * a
        * batch as u64
        * max_len as u64;
    cfg.num_params() as u64 * a + kv + batch as u64 * cfg.vocab_size as u64 * 4 + CUBLASLT_WORKSPACE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::launch::tests::qwen25_1_5b;
    const GB80: u64 = 80_000_000_000;

    /// Qwen2.5-1.5B (its config.json; 1.54 B parameters with tied embeddings) at sequence 2048 fits one 80 GB
    /// GPU with recomputation (one sequence: about 29 GB; 16 x 2048 tokens: 43.7 GB), while the same 16 x 2048
    /// micro-batch without recomputation (110.9 GB) does not — the option is what makes it fit.
    #[test]
    fn qwen2_5_1_5b_at_2048_fits_80gb_with_recomputation() {
        let cfg = qwen25_1_5b();
        let n = cfg.num_params() as u64;
        assert!(
            (1_540_000_000..1_550_000_000).contains(&n),
            "{n} parameters"
        );
        let one = train_plan(
            &cfg,
            TrainShape {
                batch: 1,
                seq: 2048,
                act: Act::Bf16,
                recompute: true,
            },
        );
        assert_eq!(
            one.persistent(),
            18 * n,
            "FP32 master + BF16 copy + grads + m + v"
        );
        assert!(one.peak() < GB80, "{one:?}: {} GB", one.peak() as f64 / 1e9);
        // 16 x 2048 tokens per micro-batch: 43.7 GB with recomputation, 110.9 GB without
        let many = TrainShape {
            batch: 16,
            seq: 2048,
            act: Act::Bf16,
            recompute: true,
        };
        let with = train_plan(&cfg, many);
        assert!(with.peak() < GB80, "{} GB", with.peak() as f64 / 1e9);
        let without = train_plan(
            &cfg,
            TrainShape {
                recompute: false,
                ..many
            },
        );
        assert!(without.peak() > GB80, "{} GB", without.peak() as f64 / 1e9);
        assert!(without.saved_activations > 10 * with.saved_activations);
        // F32 parity mode at one sequence still fits
        let f32 = train_plan(
            &cfg,
            TrainShape {
                batch: 1,
                seq: 2048,
                act: Act::F32,
                recompute: true,
            },
        );
        assert!(f32.peak() < GB80 && f32.params_act == 0);
    }

    #[test]
    fn terms_scale_as_expected() {
        let cfg = qwen25_1_5b();
        let a = train_plan(
            &cfg,
            TrainShape {
                batch: 1,
                seq: 1024,
                act: Act::Bf16,
                recompute: false,
            },
        );
        let b = train_plan(
            &cfg,
            TrainShape {
                batch: 2,
                seq: 1024,
                act: Act::Bf16,
                recompute: false,
            },
        );
        assert_eq!(b.saved_activations, 2 * a.saved_activations);
        assert_eq!(b.persistent(), a.persistent());
        // the logits at 2048 tokens and Qwen's vocabulary: 2048 x 151936 BF16 ≈ 622 MB
        let l = train_plan(
            &cfg,
            TrainShape {
                batch: 1,
                seq: 2048,
                act: Act::Bf16,
                recompute: true,
            },
        )
        .logits;
        assert!((620_000_000..660_000_000).contains(&l), "{l}");
        // sampling Qwen2.5-1.5B, batch 64, 2048 tokens: BF16 weights + KV cache (2 x 28 x 2 x 128 x 2 B per token)
        let sb = sample_bytes(&cfg, Act::Bf16, 64, 2048);
        let kv = 2 * 28 * 2 * 128 * 2 * 64 * 2048u64;
        assert_eq!(
            sb,
            cfg.num_params() as u64 * 2 + kv + 64 * 151_936 * 4 + CUBLASLT_WORKSPACE
        );
    }
}
