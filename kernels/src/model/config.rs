//! Model configuration: the Qwen2ForCausalLM `config.json` fields the decoder uses, validation, presets and the
//! parameter count.

/// Hugging Face Qwen2/Llama configuration (field names as in `config.json`). The head dimension is
/// hidden_size / num_attention_heads, as in Qwen2.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    /// q/k/v projection biases (true for Qwen2, false for Llama).
    pub attention_bias: bool,
}

/// Upper bounds that keep every allocation bounded (a hostile config.json fails validation, not malloc).
pub const MAX_HIDDEN: usize = 1 << 14;
pub const MAX_INTERMEDIATE: usize = 1 << 16;
pub const MAX_LAYERS: usize = 256;
pub const MAX_VOCAB: usize = 1 << 20;
pub const MAX_POSITIONS: usize = 1 << 17;
/// At most 2^31 parameters (8 GiB of f32).
pub const MAX_PARAMS: usize = 1 << 31;

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Width of a fused q|k|v row: (H + 2·KV)·D.
    pub fn qkv_width(&self) -> usize {
        (self.num_attention_heads + 2 * self.num_key_value_heads) * self.head_dim()
    }

    /// Checks every field; the error lists the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        let pos = |name: &str, v: usize, max: usize| -> Result<(), String> {
            if v == 0 || v > max {
                Err(format!("config: {name} = {v} must be in 1..={max}"))
            } else {
                Ok(())
            }
        };
        pos("hidden_size", c.hidden_size, MAX_HIDDEN)?;
        pos("intermediate_size", c.intermediate_size, MAX_INTERMEDIATE)?;
        pos("num_hidden_layers", c.num_hidden_layers, MAX_LAYERS)?;
        pos("num_attention_heads", c.num_attention_heads, c.hidden_size)?;
        pos(
            "num_key_value_heads",
            c.num_key_value_heads,
            c.num_attention_heads,
        )?;
        pos("vocab_size", c.vocab_size, MAX_VOCAB)?;
        pos(
            "max_position_embeddings",
            c.max_position_embeddings,
            MAX_POSITIONS,
        )?;
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(format!(
                "config: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            ));
        }
        if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
            return Err(format!(
                "config: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.num_attention_heads, c.num_key_value_heads
            ));
        }
        if !c.head_dim().is_multiple_of(2) {
            return Err(format!(
                "config: head dim {} must be even for rotary positions",
                c.head_dim()
            ));
        }
        if !(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0) {
            return Err(format!(
                "config: rms_norm_eps = {} must be finite and > 0",
                c.rms_norm_eps
            ));
        }
        if !(c.rope_theta.is_finite() && c.rope_theta > 1.0) {
            return Err(format!(
                "config: rope_theta = {} must be finite and > 1",
                c.rope_theta
            ));
        }
        let n = c.num_params_u128();
        if n > MAX_PARAMS as u128 {
            return Err(format!(
                "config: {n} parameters exceed the limit of {MAX_PARAMS}"
            ));
        }
        Ok(())
    }

    fn num_params_u128(&self) -> u128 {
        let (c, i, v) = (
            self.hidden_size as u128,
            self.intermediate_size as u128,
            self.vocab_size as u128,
        );
        let d = self.head_dim() as u128;
        let (h, kv) = (
            self.num_attention_heads as u128,
            self.num_key_value_heads as u128,
        );
        let w = (h + 2 * kv) * d;
        let per_layer =
            c + w * c + if self.attention_bias { w } else { 0 } + c * h * d + c + 3 * i * c;
        v * c
            + self.num_hidden_layers as u128 * per_layer
            + c
            + if self.tie_word_embeddings { 0 } else { v * c }
    }

    /// Total number of f32 parameters (length of the flat buffer).
    pub fn num_params(&self) -> usize {
        self.num_params_u128() as usize
    }

    /// Presets for training from scratch on CPU (vocabulary sized for the character tokenizer: 128 ids):
    /// - `tiny` (≈0.1 M): tests and quick runs; hidden 64, 2 layers, 4 heads / 2 kv heads.
    /// - `small` (≈3.2 M): benchmarks; hidden 256, 4 layers, 4 heads / 2 kv heads, intermediate 768.
    /// - `demo` (≈0.8 M): the end-to-end demo; hidden 128, 4 layers, 4 heads / 2 kv heads, intermediate 384.
    pub fn preset(name: &str) -> Option<ModelConfig> {
        let base = |hidden, inter, layers, heads, kv, max_pos| ModelConfig {
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            vocab_size: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            tie_word_embeddings: true,
            max_position_embeddings: max_pos,
            attention_bias: true,
        };
        match name {
            "tiny" => Some(base(64, 176, 2, 4, 2, 256)),
            "small" => Some(base(256, 768, 4, 4, 2, 512)),
            "demo" => Some(base(128, 384, 4, 4, 2, 512)),
            _ => None,
        }
    }

    /// Names accepted by `preset`.
    pub const PRESETS: [&'static str; 3] = ["tiny", "small", "demo"];
}
