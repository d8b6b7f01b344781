//! The flat parameter layout: one f32 buffer holding every tensor back to back, described by a table of Hugging
//! Face names, shapes and offsets; the typed offsets the kernels use; deterministic initialisation; the PRNG.
//!
//! Layout (C = hidden, D = head dim, H/KV = heads, I = intermediate, V = vocab, W = (H+2KV)·D), in order:
//!   model.embed_tokens.weight                         (V, C)
//!   for each layer i, prefix model.layers.{i}.:
//!     input_layernorm.weight                          (C)
//!     self_attn.q_proj.weight                         (H·D, C)  ┐ contiguous: one (W, C) matrix, so q, k, v
//!     self_attn.k_proj.weight                         (KV·D, C) │ come out of ONE GEMM as [q | k | v] rows
//!     self_attn.v_proj.weight                         (KV·D, C) ┘
//!     self_attn.{q,k,v}_proj.bias  (if attention_bias) (H·D), (KV·D), (KV·D) — contiguous (W)
//!     self_attn.o_proj.weight                         (C, H·D)
//!     post_attention_layernorm.weight                 (C)
//!     mlp.gate_proj.weight                            (I, C)   ┐ contiguous: one (2I, C) matrix → [gate | up]
//!     mlp.up_proj.weight                              (I, C)   ┘
//!     mlp.down_proj.weight                            (C, I)
//!   model.norm.weight                                 (C)
//!   lm_head.weight (only when not tied)               (V, C)
//! Linear weights are (out, in) as in PyTorch: y = x·Wᵀ + b. The gradient buffer has the same layout.

use super::config::ModelConfig;

/// One tensor of the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Offsets of one decoder layer's tensors in the flat buffer.
#[derive(Clone, Debug)]
pub struct LayerOffsets {
    pub ln1: usize,
    pub wqkv: usize,
    pub bqkv: Option<usize>,
    pub wo: usize,
    pub ln2: usize,
    pub wgu: usize,
    pub wdown: usize,
}

/// Offsets of all tensors; `head` equals `embed` when the embeddings are tied.
#[derive(Clone, Debug)]
pub struct Offsets {
    pub embed: usize,
    pub layers: Vec<LayerOffsets>,
    pub norm: usize,
    pub head: usize,
    pub total: usize,
}

/// Builds the table and the typed offsets for a (validated) config.
pub fn layout(cfg: &ModelConfig) -> (Vec<ParamInfo>, Offsets) {
    let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let d = cfg.head_dim();
    let (h, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let mut table = Vec::new();
    let mut off = 0usize;
    let mut push = |name: String, shape: Vec<usize>| -> usize {
        let len = shape.iter().product();
        table.push(ParamInfo {
            name,
            shape,
            offset: off,
            len,
        });
        off += len;
        off - len
    };
    let embed = push("model.embed_tokens.weight".into(), vec![v, c]);
    let mut layers = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}.");
        let ln1 = push(format!("{p}input_layernorm.weight"), vec![c]);
        let wqkv = push(format!("{p}self_attn.q_proj.weight"), vec![h * d, c]);
        push(format!("{p}self_attn.k_proj.weight"), vec![kv * d, c]);
        push(format!("{p}self_attn.v_proj.weight"), vec![kv * d, c]);
        let bqkv = if cfg.attention_bias {
            let b = push(format!("{p}self_attn.q_proj.bias"), vec![h * d]);
            push(format!("{p}self_attn.k_proj.bias"), vec![kv * d]);
            push(format!("{p}self_attn.v_proj.bias"), vec![kv * d]);
            Some(b)
        } else {
            None
        };
        let wo = push(format!("{p}self_attn.o_proj.weight"), vec![c, h * d]);
        let ln2 = push(format!("{p}post_attention_layernorm.weight"), vec![c]);
        let wgu = push(format!("{p}mlp.gate_proj.weight"), vec![i, c]);
        push(format!("{p}mlp.up_proj.weight"), vec![i, c]);
        let wdown = push(format!("{p}mlp.down_proj.weight"), vec![c, i]);
        layers.push(LayerOffsets {
            ln1,
            wqkv,
            bqkv,
            wo,
            ln2,
            wgu,
            wdown,
        });
    }
    let norm = push("model.norm.weight".into(), vec![c]);
    let head = if cfg.tie_word_embeddings {
        embed
    } else {
        push("lm_head.weight".into(), vec![v, c])
    };
    let total = off;
    (
        table,
        Offsets {
            embed,
            layers,
            norm,
            head,
            total,
        },
    )
}

/// Deterministic PRNG: xoshiro256** seeded through splitmix64 (Blackman & Vigna).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for stream `stream` of seed `seed` (streams are independent: one per sequence).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { s }
    }
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Initialises the flat buffer from a seed: norms 1, biases 0, embeddings and projections N(0, 0.02²), the
/// residual-output projections (o_proj, down_proj) N(0, (0.02/√(2L))²) so the residual stream keeps its scale.
pub fn init(cfg: &ModelConfig, table: &[ParamInfo], seed: u64, out: &mut [f32]) {
    let std_base = 0.02f64;
    let std_resid = std_base / (2.0 * cfg.num_hidden_layers as f64).sqrt();
    for (k, p) in table.iter().enumerate() {
        let dst = &mut out[p.offset..p.offset + p.len];
        if p.name.ends_with("layernorm.weight") || p.name == "model.norm.weight" {
            dst.iter_mut().for_each(|x| *x = 1.0);
        } else if p.name.ends_with(".bias") {
            dst.iter_mut().for_each(|x| *x = 0.0);
        } else {
            let sd = if p.name.ends_with("o_proj.weight") || p.name.ends_with("down_proj.weight") {
                std_resid
            } else {
                std_base
            };
            let mut rng = Rng::new(seed, k as u64 + 1);
            dst.iter_mut().for_each(|x| *x = (rng.normal() * sd) as f32);
        }
    }
}
