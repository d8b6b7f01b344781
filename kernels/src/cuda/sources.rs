//! Our CUDA C++ kernels (`kernels/cuda/`), embedded in the library: each `.cu` file is one NVRTC program
//! (one module), compiled with the shared header `common.cuh`.

/// One module: its file name, source, and the kernels (`extern "C"` entry points) it must define.
pub struct Module {
    pub name: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}

/// The headers every module may include.
pub const HEADERS: &[(&str, &str)] = &[("common.cuh", include_str!("../../cuda/common.cuh"))];

macro_rules! both {
    ($($k:literal),*) => { &[$(concat!($k, "_f32"), concat!($k, "_bf16")),*] };
}

pub const MODULES: &[Module] = &[
    Module {
        name: "embed.cu",
        source: include_str!("../../cuda/embed.cu"),
        kernels: &["embed_fwd_f32", "embed_fwd_bf16", "embed_bwd"],
    },
    Module {
        name: "rmsnorm.cu",
        source: include_str!("../../cuda/rmsnorm.cu"),
        kernels: both!("rmsnorm_fwd", "rmsnorm_bwd_dx", "rmsnorm_bwd_dw"),
    },
    Module {
        name: "rope.cu",
        source: include_str!("../../cuda/rope.cu"),
        kernels: both!("rope"),
    },
    Module {
        name: "attention.cu",
        source: include_str!("../../cuda/attention.cu"),
        kernels: &[
            "attn_fwd_f32_d16",
            "attn_fwd_f32_d32",
            "attn_fwd_f32_d64",
            "attn_fwd_f32_d128",
            "attn_fwd_bf16_d16",
            "attn_fwd_bf16_d32",
            "attn_fwd_bf16_d64",
            "attn_fwd_bf16_d128",
            "attn_bwd_f32_d16",
            "attn_bwd_f32_d32",
            "attn_bwd_f32_d64",
            "attn_bwd_f32_d128",
            "attn_bwd_bf16_d16",
            "attn_bwd_bf16_d32",
            "attn_bwd_bf16_d64",
            "attn_bwd_bf16_d128",
            "attn_decode_f32_d16",
            "attn_decode_f32_d32",
            "attn_decode_f32_d64",
            "attn_decode_f32_d128",
            "attn_decode_bf16_d16",
            "attn_decode_bf16_d32",
            "attn_decode_bf16_d64",
            "attn_decode_bf16_d128",
            "attn_bwd_pre_f32",
            "attn_bwd_pre_bf16",
        ],
    },
    Module {
        name: "swiglu.cu",
        source: include_str!("../../cuda/swiglu.cu"),
        kernels: both!("swiglu_fwd", "swiglu_bwd"),
    },
    Module {
        name: "xent.cu",
        source: include_str!("../../cuda/xent.cu"),
        kernels: both!("logprob_fwd", "logprob_bwd"),
    },
    Module {
        name: "loss.cu",
        source: include_str!("../../cuda/loss.cu"),
        kernels: &["grpo_loss", "sft_loss"],
    },
    Module {
        name: "optim.cu",
        source: include_str!("../../cuda/optim.cu"),
        kernels: &[
            "sumsq_partial",
            "sumsq_final",
            "scale_inplace",
            "adamw",
            "cast_bf16",
        ],
    },
    Module {
        name: "sample.cu",
        source: include_str!("../../cuda/sample.cu"),
        kernels: both!("kv_append", "kv_gather", "sample_rows"),
    },
];

/// The architectures the kernels are built and checked for: cubins for sm_80 (A100) and sm_90 (H100), and
/// compute_80 PTX that the driver can JIT for newer GPUs.
pub const CUBIN_ARCHS: &[u32] = &[80, 90];
pub const PTX_ARCH: u32 = 80;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel the table names is an `extern "C" __global__` entry of its module's source (written out,
    /// or made by the module's instantiation macro: `name_##S` / `name_##S##_d##DD`), and names are unique.
    /// (The compile check also finds each one as a `.entry` of the compiled PTX.)
    #[test]
    fn every_listed_kernel_is_defined() {
        let mut seen = std::collections::HashSet::new();
        for m in MODULES {
            for k in m.kernels {
                assert!(seen.insert(*k), "{k} listed twice");
                let direct = m.source.contains(&format!(" {k}("));
                let mut via_macro = false;
                for s in ["_f32", "_bf16"] {
                    if let Some(i) = k.find(s) {
                        let (base, rest) = (&k[..i], &k[i + s.len()..]);
                        via_macro |= if rest.is_empty() {
                            m.source.contains(&format!(" {base}_##S("))
                        } else {
                            rest.strip_prefix("_d")
                                .is_some_and(|d| m.source.contains(&format!("ATTN_D(S, T, {d})")))
                                && m.source.contains(&format!("{base}_##S##_d##DD("))
                        };
                    }
                }
                assert!(direct || via_macro, "{k} is not defined in {}", m.name);
            }
            assert!(
                m.source.contains("#include \"common.cuh\""),
                "{} includes the common header",
                m.name
            );
        }
    }
}
