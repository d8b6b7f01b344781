//! Training forward and backward passes of the decoder over a padded batch (B sequences × T positions,
//! N = B·T rows), llm.c style: every activation the backward pass needs is kept in `Acts`, one flat Vec per
//! kind with the layer index outermost, shapes in the comments. Padding rows (positions past a sequence's
//! end) are computed like any other row: attention is causal, so they never influence real positions, and the
//! loss gives them zero gradient.

use super::config::ModelConfig;
use super::params::Offsets;
use crate::backend::gemm::sgemm;
use crate::backend::ops::{self, AttnDims};

/// Saved activations and backward scratch for one (B, T) shape; buffers grow and are reused.
#[derive(Default)]
pub struct Acts {
    pub b: usize,
    pub t: usize,
    pub tokens: Vec<u32>, // (N)
    pub pos: Vec<usize>,  // (N) position of each row = row % T
    pub x: Vec<f32>,      // (L+1, N, C) residual stream: x[0] embeddings, x[l+1] output of layer l
    pub xmid: Vec<f32>,   // (L, N, C) residual after attention
    pub ln1: Vec<f32>,    // (L, N, C)
    pub rstd1: Vec<f32>,  // (L, N)
    pub qkv: Vec<f32>,    // (L, N, W) after bias and RoPE
    pub probs: Vec<f32>,  // (L, B, H, T, T) attention softmax
    pub att: Vec<f32>,    // (L, N, H·D)
    pub ln2: Vec<f32>,    // (L, N, C)
    pub rstd2: Vec<f32>,  // (L, N)
    pub gu: Vec<f32>,     // (L, N, 2I) [gate | up] pre-activation
    pub hmlp: Vec<f32>,   // (L, N, I) silu(gate)·up
    pub lnf: Vec<f32>,    // (N, C)
    pub rstdf: Vec<f32>,  // (N)
    pub logits: Vec<f32>, // (N, V); the loss overwrites it with ∂L/∂logits
    // backward scratch
    pub dx: Vec<f32>,   // (N, C) gradient of the residual stream
    pub dln: Vec<f32>,  // (N, C)
    pub dqkv: Vec<f32>, // (N, W)
    pub datt: Vec<f32>, // (N, H·D)
    pub dgu: Vec<f32>,  // (N, 2I)
    pub dh: Vec<f32>,   // (N, I)
}

fn fit(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

impl Acts {
    /// Sizes every buffer for (b, t) (activation memory grows with B·T·(L·(5C + W + 3I + H·D) + V) + L·B·H·T²).
    pub fn prepare(&mut self, cfg: &ModelConfig, b: usize, t: usize) {
        let (c, l, i, v) = (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.intermediate_size,
            cfg.vocab_size,
        );
        let (h, d) = (cfg.num_attention_heads, cfg.head_dim());
        let w = cfg.qkv_width();
        let n = b * t;
        self.b = b;
        self.t = t;
        fit(&mut self.x, (l + 1) * n * c);
        fit(&mut self.xmid, l * n * c);
        fit(&mut self.ln1, l * n * c);
        fit(&mut self.rstd1, l * n);
        fit(&mut self.qkv, l * n * w);
        fit(&mut self.probs, l * b * h * t * t);
        fit(&mut self.att, l * n * h * d);
        fit(&mut self.ln2, l * n * c);
        fit(&mut self.rstd2, l * n);
        fit(&mut self.gu, l * n * 2 * i);
        fit(&mut self.hmlp, l * n * i);
        fit(&mut self.lnf, n * c);
        fit(&mut self.rstdf, n);
        fit(&mut self.logits, n * v);
        self.pos.clear();
        self.pos.extend((0..n).map(|r| r % t));
    }

    fn prepare_backward(&mut self, cfg: &ModelConfig) {
        let n = self.b * self.t;
        let (c, i) = (cfg.hidden_size, cfg.intermediate_size);
        fit(&mut self.dx, n * c);
        fit(&mut self.dln, n * c);
        fit(&mut self.dqkv, n * cfg.qkv_width());
        fit(&mut self.datt, n * cfg.num_attention_heads * cfg.head_dim());
        fit(&mut self.dgu, n * 2 * i);
        fit(&mut self.dh, n * i);
    }

    /// Frees every buffer (after a large batch, so an idle model does not hold the memory).
    pub fn release(&mut self) {
        *self = Acts::default();
    }
}

/// Adds bias (len w) to every row of x (rows of width w).
fn add_bias(x: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    crate::backend::threads::par_rows(x, w, 256, |_, blk| {
        for row in blk.chunks_exact_mut(w) {
            for (a, b) in row.iter_mut().zip(bias) {
                *a += b;
            }
        }
    });
}

/// Forward over tokens (B·T, already validated < V) leaving logits (N, V) and all activations in `a`.
pub fn forward(
    cfg: &ModelConfig,
    off: &Offsets,
    p: &[f32],
    rope: (&[f32], &[f32]),
    a: &mut Acts,
    tokens: &[u32],
) {
    let (b, t) = (a.b, a.t);
    let n = b * t;
    let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (h, kv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim(),
    );
    let (w, hd) = (cfg.qkv_width(), h * d);
    let dm = AttnDims { b, t, h, kv, d };
    a.tokens.clear();
    a.tokens.extend_from_slice(tokens);
    ops::embedding_fwd(
        tokens,
        &p[off.embed..off.embed + v * c],
        c,
        &mut a.x[..n * c],
    );
    for (l, lo) in off.layers.iter().enumerate() {
        let xl = &a.x[l * n * c..(l + 1) * n * c];
        let ln1 = &mut a.ln1[l * n * c..(l + 1) * n * c];
        ops::rmsnorm_fwd(
            xl,
            &p[lo.ln1..lo.ln1 + c],
            cfg.rms_norm_eps,
            ln1,
            &mut a.rstd1[l * n..(l + 1) * n],
        );
        // qkv (N, W) = ln1 (N, C) · Wqkvᵀ (C, W) + b
        let qkv = &mut a.qkv[l * n * w..(l + 1) * n * w];
        sgemm(
            false,
            true,
            n,
            w,
            c,
            1.0,
            ln1,
            c,
            &p[lo.wqkv..lo.wqkv + w * c],
            c,
            0.0,
            qkv,
            w,
        );
        if let Some(bo) = lo.bqkv {
            add_bias(qkv, &p[bo..bo + w]);
        }
        ops::rope(qkv, w, h + kv, d, &a.pos, rope.0, rope.1, false);
        let att = &mut a.att[l * n * hd..(l + 1) * n * hd];
        ops::attention_fwd(
            dm,
            qkv,
            &mut a.probs[l * b * h * t * t..(l + 1) * b * h * t * t],
            att,
        );
        // xmid (N, C) = x_l + att (N, H·D) · Woᵀ (H·D, C)
        let xmid = &mut a.xmid[l * n * c..(l + 1) * n * c];
        xmid.copy_from_slice(&a.x[l * n * c..(l + 1) * n * c]);
        sgemm(
            false,
            true,
            n,
            c,
            hd,
            1.0,
            att,
            hd,
            &p[lo.wo..lo.wo + c * hd],
            hd,
            1.0,
            xmid,
            c,
        );
        let ln2 = &mut a.ln2[l * n * c..(l + 1) * n * c];
        ops::rmsnorm_fwd(
            xmid,
            &p[lo.ln2..lo.ln2 + c],
            cfg.rms_norm_eps,
            ln2,
            &mut a.rstd2[l * n..(l + 1) * n],
        );
        // gu (N, 2I) = ln2 · [Wgate; Wup]ᵀ ; h = silu(gate)·up (N, I)
        let gu = &mut a.gu[l * n * 2 * i..(l + 1) * n * 2 * i];
        sgemm(
            false,
            true,
            n,
            2 * i,
            c,
            1.0,
            ln2,
            c,
            &p[lo.wgu..lo.wgu + 2 * i * c],
            c,
            0.0,
            gu,
            2 * i,
        );
        let hm = &mut a.hmlp[l * n * i..(l + 1) * n * i];
        ops::swiglu_fwd(gu, hm, i);
        // x_{l+1} (N, C) = xmid + h · Wdownᵀ (I, C)
        let (_, xnext) = a.x.split_at_mut((l + 1) * n * c);
        let xnext = &mut xnext[..n * c];
        xnext.copy_from_slice(xmid);
        sgemm(
            false,
            true,
            n,
            c,
            i,
            1.0,
            hm,
            i,
            &p[lo.wdown..lo.wdown + c * i],
            i,
            1.0,
            xnext,
            c,
        );
    }
    let nl = off.layers.len();
    let xl = &a.x[nl * n * c..(nl + 1) * n * c];
    ops::rmsnorm_fwd(
        xl,
        &p[off.norm..off.norm + c],
        cfg.rms_norm_eps,
        &mut a.lnf,
        &mut a.rstdf,
    );
    // logits (N, V) = lnf (N, C) · Wheadᵀ (C, V)
    sgemm(
        false,
        true,
        n,
        v,
        c,
        1.0,
        &a.lnf,
        c,
        &p[off.head..off.head + v * c],
        c,
        0.0,
        &mut a.logits,
        v,
    );
}

/// Backward from ∂L/∂logits (in `a.logits`, (N, V)); ADDS every parameter gradient into `g` (flat layout).
pub fn backward(
    cfg: &ModelConfig,
    off: &Offsets,
    p: &[f32],
    rope: (&[f32], &[f32]),
    a: &mut Acts,
    g: &mut [f32],
) {
    a.prepare_backward(cfg);
    let (b, t) = (a.b, a.t);
    let n = b * t;
    let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (h, kv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim(),
    );
    let (w, hd) = (cfg.qkv_width(), h * d);
    let dm = AttnDims { b, t, h, kv, d };
    let nl = off.layers.len();
    // head: dWhead (V, C) += dlogitsᵀ · lnf ; dlnf (N, C) = dlogits · Whead
    sgemm(
        true,
        false,
        v,
        c,
        n,
        1.0,
        &a.logits,
        v,
        &a.lnf,
        c,
        1.0,
        &mut g[off.head..off.head + v * c],
        c,
    );
    sgemm(
        false,
        false,
        n,
        c,
        v,
        1.0,
        &a.logits,
        v,
        &p[off.head..off.head + v * c],
        c,
        0.0,
        &mut a.dln,
        c,
    );
    a.dx.iter_mut().for_each(|x| *x = 0.0);
    let xl = &a.x[nl * n * c..(nl + 1) * n * c];
    ops::rmsnorm_bwd(
        &a.dln,
        xl,
        &p[off.norm..off.norm + c],
        &a.rstdf,
        &mut a.dx,
        &mut g[off.norm..off.norm + c],
    );
    for (l, lo) in off.layers.iter().enumerate().rev() {
        let hm = &a.hmlp[l * n * i..(l + 1) * n * i];
        // MLP: dWdown (C, I) += dxᵀ · h ; dh (N, I) = dx · Wdown
        sgemm(
            true,
            false,
            c,
            i,
            n,
            1.0,
            &a.dx,
            c,
            hm,
            i,
            1.0,
            &mut g[lo.wdown..lo.wdown + c * i],
            i,
        );
        sgemm(
            false,
            false,
            n,
            i,
            c,
            1.0,
            &a.dx,
            c,
            &p[lo.wdown..lo.wdown + c * i],
            i,
            0.0,
            &mut a.dh,
            i,
        );
        let gu = &a.gu[l * n * 2 * i..(l + 1) * n * 2 * i];
        ops::swiglu_bwd(&a.dh, gu, &mut a.dgu, i);
        // dWgu (2I, C) += dguᵀ · ln2 ; dln2 (N, C) = dgu · Wgu
        let ln2 = &a.ln2[l * n * c..(l + 1) * n * c];
        sgemm(
            true,
            false,
            2 * i,
            c,
            n,
            1.0,
            &a.dgu,
            2 * i,
            ln2,
            c,
            1.0,
            &mut g[lo.wgu..lo.wgu + 2 * i * c],
            c,
        );
        sgemm(
            false,
            false,
            n,
            c,
            2 * i,
            1.0,
            &a.dgu,
            2 * i,
            &p[lo.wgu..lo.wgu + 2 * i * c],
            c,
            0.0,
            &mut a.dln,
            c,
        );
        let xmid = &a.xmid[l * n * c..(l + 1) * n * c];
        let rstd2 = &a.rstd2[l * n..(l + 1) * n];
        ops::rmsnorm_bwd(
            &a.dln,
            xmid,
            &p[lo.ln2..lo.ln2 + c],
            rstd2,
            &mut a.dx,
            &mut g[lo.ln2..lo.ln2 + c],
        );
        // attention output: dWo (C, H·D) += dxᵀ · att ; datt (N, H·D) = dx · Wo
        let att = &a.att[l * n * hd..(l + 1) * n * hd];
        sgemm(
            true,
            false,
            c,
            hd,
            n,
            1.0,
            &a.dx,
            c,
            att,
            hd,
            1.0,
            &mut g[lo.wo..lo.wo + c * hd],
            hd,
        );
        sgemm(
            false,
            false,
            n,
            hd,
            c,
            1.0,
            &a.dx,
            c,
            &p[lo.wo..lo.wo + c * hd],
            hd,
            0.0,
            &mut a.datt,
            hd,
        );
        let qkv = &a.qkv[l * n * w..(l + 1) * n * w];
        let probs = &a.probs[l * b * h * t * t..(l + 1) * b * h * t * t];
        ops::attention_bwd(dm, &a.datt, qkv, probs, &mut a.dqkv);
        ops::rope(&mut a.dqkv, w, h + kv, d, &a.pos, rope.0, rope.1, true);
        if let Some(bo) = lo.bqkv {
            let gb = &mut g[bo..bo + w];
            for row in a.dqkv.chunks_exact(w) {
                for (x, y) in gb.iter_mut().zip(row) {
                    *x += y;
                }
            }
        }
        // dWqkv (W, C) += dqkvᵀ · ln1 ; dln1 (N, C) = dqkv · Wqkv
        let ln1 = &a.ln1[l * n * c..(l + 1) * n * c];
        sgemm(
            true,
            false,
            w,
            c,
            n,
            1.0,
            &a.dqkv,
            w,
            ln1,
            c,
            1.0,
            &mut g[lo.wqkv..lo.wqkv + w * c],
            c,
        );
        sgemm(
            false,
            false,
            n,
            c,
            w,
            1.0,
            &a.dqkv,
            w,
            &p[lo.wqkv..lo.wqkv + w * c],
            c,
            0.0,
            &mut a.dln,
            c,
        );
        let xl = &a.x[l * n * c..(l + 1) * n * c];
        let rstd1 = &a.rstd1[l * n..(l + 1) * n];
        ops::rmsnorm_bwd(
            &a.dln,
            xl,
            &p[lo.ln1..lo.ln1 + c],
            rstd1,
            &mut a.dx,
            &mut g[lo.ln1..lo.ln1 + c],
        );
    }
    ops::embedding_bwd(&a.tokens, &a.dx, c, &mut g[off.embed..off.embed + v * c]);
}
