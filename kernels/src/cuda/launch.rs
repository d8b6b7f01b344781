//! Launch configurations: the grid, block and shared memory of every kernel of `kernels/cuda` for a shape, and
//! their check against the limits of the GPU architecture (the kernels' own assumptions — power-of-two blocks
//! for the tree reductions, head dims the attention kernels are instantiated for, Hq a multiple of Hkv — are
//! checked here too, so a bad shape is an error before anything is launched).
use crate::error::{Error, Result};

/// Limits of one architecture (CUDA C Programming Guide, "Technical Specifications per Compute Capability").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchLimits {
    pub sm: u32,
    pub max_threads_per_block: u32,
    pub max_block: (u32, u32, u32),
    pub max_grid: (u32, u32, u32),
    /// Static shared memory per block, and the most a kernel may opt in to (dynamic) per block.
    pub max_shared_static: u32,
    pub max_shared_optin: u32,
    pub registers_per_block: u32,
}

/// sm_80 (A100) and sm_90 (H100); sm_86/89 share sm_80's kernel build with their own shared-memory limit.
pub fn limits(sm: u32) -> Option<ArchLimits> {
    let base = ArchLimits {
        sm,
        max_threads_per_block: 1024,
        max_block: (1024, 1024, 64),
        max_grid: (i32::MAX as u32, 65_535, 65_535),
        max_shared_static: 48 * 1024,
        max_shared_optin: 0,
        registers_per_block: 65_536,
    };
    let optin = match sm {
        80 | 87 => 163 * 1024,
        86 | 89 => 99 * 1024,
        90 => 227 * 1024,
        _ => return None,
    };
    Some(ArchLimits {
        max_shared_optin: optin,
        ..base
    })
}

/// The activation type a kernel instance reads (`_f32` / `_bf16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    F32,
    Bf16,
}

impl Act {
    pub fn suffix(self) -> &'static str {
        match self {
            Act::F32 => "f32",
            Act::Bf16 => "bf16",
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            Act::F32 => 4,
            Act::Bf16 => 2,
        }
    }
}

/// One launch: the kernel's name (as in `sources::MODULES`) and its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub kernel: String,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Static shared memory the kernel declares (for the check).
    pub static_shared: u32,
    /// Dynamic shared memory passed at launch (above 48 KiB the kernel must opt in first).
    pub dynamic_shared: u32,
}

impl Launch {
    pub fn threads(&self) -> u32 {
        self.block.0 * self.block.1 * self.block.2
    }

    /// Checks the configuration against `lim`.
    pub fn check(&self, lim: &ArchLimits) -> Result<()> {
        let bad = |what: String| {
            Err(Error::invalid(format!(
                "{} on sm_{}: {what}",
                self.kernel, lim.sm
            )))
        };
        let (g, b) = (self.grid, self.block);
        if g.0 == 0 || g.1 == 0 || g.2 == 0 || b.0 == 0 || b.1 == 0 || b.2 == 0 {
            return bad(format!("empty launch (grid {g:?}, block {b:?})"));
        }
        if g.0 > lim.max_grid.0 || g.1 > lim.max_grid.1 || g.2 > lim.max_grid.2 {
            return bad(format!("grid {g:?} exceeds {:?}", lim.max_grid));
        }
        if b.0 > lim.max_block.0
            || b.1 > lim.max_block.1
            || b.2 > lim.max_block.2
            || self.threads() > lim.max_threads_per_block
        {
            return bad(format!(
                "block {b:?} exceeds {} threads / {:?}",
                lim.max_threads_per_block, lim.max_block
            ));
        }
        if self.static_shared > lim.max_shared_static {
            return bad(format!(
                "{} bytes of static shared memory > {}",
                self.static_shared, lim.max_shared_static
            ));
        }
        let total = self.static_shared + self.dynamic_shared;
        let cap = if self.dynamic_shared > 0 {
            lim.max_shared_optin.max(lim.max_shared_static)
        } else {
            lim.max_shared_static
        };
        if total > cap {
            return bad(format!("{total} bytes of shared memory > {cap}"));
        }
        Ok(())
    }

    /// True when the kernel must be given `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` before launch.
    pub fn needs_optin(&self) -> bool {
        self.static_shared + self.dynamic_shared > 48 * 1024
    }
}

const ROWWISE_BLOCK: u32 = 256;
/// Grid-stride kernels use at most this many blocks (enough to fill 132 SMs many times over).
const MAX_STRIDE_BLOCKS: u64 = 8192;
/// The attention kernels' tiles (attention.cu: BR, BC) and their supported head dims.
pub const ATTN_TILE: u32 = 32;
pub const ATTN_HEAD_DIMS: &[usize] = &[16, 32, 64, 128];

fn u32_of(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x)
        .map_err(|_| Error::invalid(format!("{what} = {x} does not fit a launch dimension")))
}

fn stride_grid(n: usize) -> Result<u32> {
    if n == 0 {
        return Err(Error::invalid("empty grid-stride launch"));
    }
    Ok((n as u64)
        .div_ceil(ROWWISE_BLOCK as u64)
        .min(MAX_STRIDE_BLOCKS) as u32)
}

fn launch(
    kernel: String,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    static_shared: u32,
    dynamic_shared: u32,
) -> Launch {
    Launch {
        kernel,
        grid,
        block,
        static_shared,
        dynamic_shared,
    }
}

/// Block size of a one-block-per-row reduction over `cols`: a power of two, 128..=1024, about cols/8 threads.
pub fn row_block(cols: usize) -> u32 {
    (cols.div_ceil(8).next_power_of_two() as u32).clamp(128, 1024)
}

pub fn embed_fwd(n_tok: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("embed_fwd_{}", act.suffix()),
        (u32_of(n_tok, "tokens")?, 1, 1),
        (ROWWISE_BLOCK, 1, 1),
        0,
        0,
    ))
}

pub fn embed_bwd(n_tok: usize) -> Result<Launch> {
    Ok(launch(
        "embed_bwd".into(),
        (u32_of(n_tok, "tokens")?, 1, 1),
        (ROWWISE_BLOCK, 1, 1),
        0,
        0,
    ))
}

/// rmsnorm_fwd and rmsnorm_bwd_dx (one block per row; block_sum's scratch of 32 floats).
pub fn rmsnorm_row(kernel: &str, rows: usize, cols: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("{kernel}_{}", act.suffix()),
        (u32_of(rows, "rows")?, 1, 1),
        (row_block(cols), 1, 1),
        32 * 4,
        0,
    ))
}

pub fn rmsnorm_bwd_dw(cols: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("rmsnorm_bwd_dw_{}", act.suffix()),
        (u32_of(cols.div_ceil(32), "column tiles")?, 1, 1),
        (32, 8, 1),
        8 * 33 * 4,
        0,
    ))
}

pub fn rope(rows: usize, d: usize, act: Act) -> Result<Launch> {
    if d % 2 != 0 {
        return Err(Error::invalid(format!("rope: head dim {d} is odd")));
    }
    Ok(launch(
        format!("rope_{}", act.suffix()),
        (u32_of(rows, "rows")?, 1, 1),
        (128, 1, 1),
        0,
        0,
    ))
}

/// The attention shape: batch, sequence, query heads, key/value heads, head dim.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
}

impl AttnShape {
    fn check(&self) -> Result<()> {
        if !ATTN_HEAD_DIMS.contains(&self.d) {
            return Err(Error::invalid(format!(
                "attention: head dim {} is not one of {ATTN_HEAD_DIMS:?}",
                self.d
            )));
        }
        if self.hkv == 0 || !self.hq.is_multiple_of(self.hkv) {
            return Err(Error::invalid(format!(
                "attention: {} query heads are not a multiple of {} key/value heads",
                self.hq, self.hkv
            )));
        }
        if self.b == 0 || self.t == 0 {
            return Err(Error::invalid("attention: empty batch"));
        }
        Ok(())
    }
}

/// Dynamic shared memory of attn_bwd (attention.cu): Q and dO tiles, the K tile, dS (BR x (BC + 1)), lse, D.
pub fn attn_bwd_smem(d: usize) -> u32 {
    let (br, bc, d) = (ATTN_TILE, ATTN_TILE, d as u32);
    (2 * br * d + bc * d + br * (bc + 1) + 2 * br) * 4
}

pub fn attn_fwd(s: AttnShape, act: Act) -> Result<Launch> {
    s.check()?;
    let grid = (
        u32_of(s.t.div_ceil(ATTN_TILE as usize), "query tiles")?,
        u32_of(s.hq, "heads")?,
        u32_of(s.b, "batch")?,
    );
    Ok(launch(
        format!("attn_fwd_{}_d{}", act.suffix(), s.d),
        grid,
        (128, 1, 1),
        2 * ATTN_TILE * s.d as u32 * 4,
        0,
    ))
}

pub fn attn_bwd(s: AttnShape, act: Act) -> Result<Launch> {
    s.check()?;
    let grid = (
        u32_of(s.t.div_ceil(ATTN_TILE as usize), "key tiles")?,
        u32_of(s.hkv, "kv heads")?,
        u32_of(s.b, "batch")?,
    );
    Ok(launch(
        format!("attn_bwd_{}_d{}", act.suffix(), s.d),
        grid,
        (128, 1, 1),
        0,
        attn_bwd_smem(s.d),
    ))
}

pub fn attn_bwd_pre(s: AttnShape, act: Act) -> Result<Launch> {
    s.check()?;
    let rows = s.b * s.hq * s.t;
    Ok(launch(
        format!("attn_bwd_pre_{}", act.suffix()),
        (u32_of(rows.div_ceil(8), "rows / 8")?, 1, 1),
        (256, 1, 1),
        0,
        0,
    ))
}

/// Decode over the KV cache: one block per (head, sequence).
pub fn attn_decode(s: AttnShape, act: Act) -> Result<Launch> {
    s.check()?;
    let shared = (4 + 4 + 4 * s.d as u32) * 4;
    Ok(launch(
        format!("attn_decode_{}_d{}", act.suffix(), s.d),
        (u32_of(s.hq, "heads")?, u32_of(s.b, "batch")?, 1),
        (128, 1, 1),
        shared,
        0,
    ))
}

pub fn swiglu(kernel: &str, rows: usize, inter: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("{kernel}_{}", act.suffix()),
        (stride_grid(rows * inter)?, 1, 1),
        (ROWWISE_BLOCK, 1, 1),
        0,
        0,
    ))
}

/// logprob_fwd (online max/sum, 64 floats of scratch) and logprob_bwd: one block of 1024 per row.
pub fn logprob(kernel: &str, rows: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("{kernel}_{}", act.suffix()),
        (u32_of(rows, "rows")?, 1, 1),
        (1024, 1, 1),
        64 * 4,
        0,
    ))
}

pub fn token_loss(kernel: &str, n: usize) -> Result<Launch> {
    Ok(launch(
        kernel.into(),
        (u32_of(n.div_ceil(256).max(1), "tokens / 256")?, 1, 1),
        (256, 1, 1),
        32 * 4,
        0,
    ))
}

/// sumsq_partial (grid-stride, shared double[1024]; power-of-two block) and its partial count.
pub fn sumsq_partial(n: usize) -> Result<Launch> {
    Ok(launch(
        "sumsq_partial".into(),
        (stride_grid(n)?.min(1024), 1, 1),
        (ROWWISE_BLOCK, 1, 1),
        1024 * 8,
        0,
    ))
}

pub fn sumsq_final() -> Launch {
    launch("sumsq_final".into(), (1, 1, 1), (1024, 1, 1), 1024 * 8, 0)
}

pub fn elementwise(kernel: &str, n: usize) -> Result<Launch> {
    Ok(launch(
        kernel.into(),
        (stride_grid(n)?, 1, 1),
        (ROWWISE_BLOCK, 1, 1),
        0,
        0,
    ))
}

pub fn kv_append(n_rows: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("kv_append_{}", act.suffix()),
        (u32_of(n_rows, "rows")?, 1, 1),
        (128, 1, 1),
        0,
        0,
    ))
}

pub fn kv_gather(n_dst: usize, hkv: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("kv_gather_{}", act.suffix()),
        (u32_of(n_dst, "sequences")?, u32_of(hkv, "kv heads")?, 1),
        (128, 1, 1),
        0,
        0,
    ))
}

pub fn sample_rows(batch: usize, act: Act) -> Result<Launch> {
    Ok(launch(
        format!("sample_rows_{}", act.suffix()),
        (u32_of(batch, "batch")?, 1, 1),
        (1024, 1, 1),
        (32 * 4) * 3 + 32 * 4,
        0,
    ))
}

/// Every launch of one training step and one decode step of a model shape: `tokens` = batch x seq.
pub fn step_launches(
    cfg: &crate::model::ModelConfig,
    batch: usize,
    seq: usize,
    act: Act,
) -> Result<Vec<Launch>> {
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let tokens = batch * seq;
    let s = AttnShape {
        b: batch,
        t: seq,
        hq: cfg.num_attention_heads,
        hkv: cfg.num_key_value_heads,
        d: cfg.head_dim(),
    };
    let n = cfg.num_params();
    Ok(vec![
        embed_fwd(tokens, act)?,
        embed_bwd(tokens)?,
        rmsnorm_row("rmsnorm_fwd", tokens, h, act)?,
        rmsnorm_row("rmsnorm_bwd_dx", tokens, h, act)?,
        rmsnorm_bwd_dw(h, act)?,
        rope(tokens, s.d, act)?,
        attn_fwd(s, act)?,
        attn_bwd_pre(s, act)?,
        attn_bwd(s, act)?,
        swiglu("swiglu_fwd", tokens, inter, act)?,
        swiglu("swiglu_bwd", tokens, inter, act)?,
        logprob("logprob_fwd", tokens, act)?,
        logprob("logprob_bwd", tokens, act)?,
        token_loss("grpo_loss", tokens)?,
        token_loss("sft_loss", tokens)?,
        sumsq_partial(n)?,
        sumsq_final(),
        elementwise("scale_inplace", n)?,
        elementwise("adamw", n)?,
        elementwise("cast_bf16", n)?,
        attn_decode(s, act)?,
        kv_append(tokens, act)?,
        kv_gather(batch, s.hkv, act)?,
        sample_rows(batch, act)?,
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cuda::sources::MODULES;
    use crate::model::ModelConfig;

    /// Qwen/Qwen2.5-1.5B's config.json (also used by the memory plan's tests).
    pub(crate) fn qwen25_1_5b() -> ModelConfig {
        ModelConfig {
            hidden_size: 1536,
            intermediate_size: 8960,
            num_hidden_layers: 28,
            num_attention_heads: 12,
            num_key_value_heads: 2,
            vocab_size: 151_936,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 131_072,
            attention_bias: true,
        }
    }

    pub fn qwen25_0_5b() -> ModelConfig {
        ModelConfig {
            hidden_size: 896,
            intermediate_size: 4864,
            num_hidden_layers: 24,
            num_attention_heads: 14,
            num_key_value_heads: 2,
            ..qwen25_1_5b()
        }
    }

    fn all_kernels() -> std::collections::HashSet<&'static str> {
        MODULES
            .iter()
            .flat_map(|m| m.kernels.iter().copied())
            .collect()
    }

    /// The launches of a step at the presets' and Qwen2.5's shapes are valid on sm_80 and sm_90, name kernels
    /// that exist, and the attention backward at head dim 128 needs the shared-memory opt-in.
    #[test]
    fn step_launches_fit_sm80_and_sm90() {
        let known = all_kernels();
        let mut shapes: Vec<(ModelConfig, usize, usize)> = vec![
            (qwen25_1_5b(), 1, 2048),
            (qwen25_1_5b(), 8, 2048),
            (qwen25_0_5b(), 256, 1024),
        ];
        for p in ModelConfig::PRESETS {
            shapes.push((ModelConfig::preset(p).unwrap(), 4, 256));
        }
        for (cfg, b, t) in &shapes {
            for act in [Act::F32, Act::Bf16] {
                let ls = step_launches(cfg, *b, *t, act).unwrap();
                for l in &ls {
                    assert!(
                        known.contains(l.kernel.as_str()),
                        "{} is not a kernel of kernels/cuda",
                        l.kernel
                    );
                    for sm in [80, 90] {
                        l.check(&limits(sm).unwrap())
                            .unwrap_or_else(|e| panic!("{}", e.message));
                    }
                }
                let bwd = ls
                    .iter()
                    .find(|l| l.kernel.starts_with("attn_bwd_") && !l.kernel.contains("pre"))
                    .unwrap();
                assert_eq!(
                    bwd.needs_optin(),
                    cfg.head_dim() == 128,
                    "{} d={}",
                    bwd.kernel,
                    cfg.head_dim()
                );
            }
        }
        // Qwen2.5-1.5B: 12 heads of 128, GQA 12:2, attention grids
        let s = AttnShape {
            b: 8,
            t: 2048,
            hq: 12,
            hkv: 2,
            d: 128,
        };
        assert_eq!(attn_fwd(s, Act::Bf16).unwrap().grid, (64, 12, 8));
        assert_eq!(attn_bwd(s, Act::Bf16).unwrap().grid, (64, 2, 8));
        assert_eq!(
            attn_bwd_smem(128),
            (2 * 32 * 128 + 32 * 128 + 32 * 33 + 64) * 4
        );
    }

    #[test]
    fn limits_are_enforced() {
        let l80 = limits(80).unwrap();
        let small = ArchLimits {
            max_shared_optin: 48 * 1024,
            ..l80
        };
        let s = AttnShape {
            b: 1,
            t: 2048,
            hq: 12,
            hkv: 2,
            d: 128,
        };
        let bwd = attn_bwd(s, Act::Bf16).unwrap();
        assert!(bwd.check(&l80).is_ok());
        assert!(bwd
            .check(&small)
            .unwrap_err()
            .message
            .contains("bytes of shared memory"));
        // 65,536 sequences do not fit grid.z
        let e = attn_fwd(AttnShape { b: 65_536, ..s }, Act::F32)
            .unwrap()
            .check(&l80)
            .unwrap_err();
        assert!(e.message.contains("grid"), "{}", e.message);
        assert!(attn_fwd(AttnShape { d: 96, ..s }, Act::F32)
            .unwrap_err()
            .message
            .contains("head dim 96"));
        assert!(attn_fwd(AttnShape { hkv: 5, ..s }, Act::F32)
            .unwrap_err()
            .message
            .contains("not a multiple"));
        assert!(rope(10, 7, Act::F32).is_err());
        assert!(elementwise("adamw", 0).is_err());
        let too_big = Launch {
            block: (1024, 2, 1),
            ..sumsq_final()
        };
        assert!(too_big.check(&l80).unwrap_err().message.contains("threads"));
        assert!(
            limits(75).is_none(),
            "sm_75 is below the supported architectures"
        );
        // row blocks are powers of two within 128..=1024
        for cols in [1, 64, 896, 1536, 8960, 151_936] {
            let b = row_block(cols);
            assert!(
                b.is_power_of_two() && (128..=1024).contains(&b),
                "{cols}: {b}"
            );
        }
        // grid-stride kernels cap their grid
        assert_eq!(
            elementwise("adamw", 1_543_714_304).unwrap().grid.0,
            MAX_STRIDE_BLOCKS as u32
        );
    }
}
