//! The on-GPU op check of `pnpm gpu:check` (without `--compile-only`): every kernel of `kernels/cuda` run on
//! the device on seeded random inputs and compared with the CPU backend (`backend::ops`, `model::loss`) in
//! FP32 mode, with the tolerances of `TOL_*`. Written and compiled here; NOT yet run on a GPU (no session so far
//! had one) — its first run is part of verifying the CUDA backend.
//!
//! `Gpu::open` is also how the CUDA model will start: probe and check the device, create the context, compile
//! every module for the device's architecture through the NVRTC disk cache, load the functions.
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};

use crate::backend::gemm::sgemm;
use crate::backend::ops;
use crate::cuda::blaslt::{self, Lt, Precision, Product};
use crate::cuda::launch::{self, Act, ArchLimits, AttnShape, Launch};
use crate::cuda::libs::{self, DeviceInfo};
use crate::cuda::nvrtc::{self, Nvrtc, Target};
use crate::cuda::sources::{HEADERS, MODULES};
use crate::error::{Error, Result};
use crate::model::loss::{token_loss, LossSpec};

/// Elementwise ops and row reductions (one rounding or a short sum apart).
pub const TOL_ELEMENTWISE: f64 = 1e-5;
/// Softmax-based ops (attention, log-softmax): a different summation order and `__expf` (2 ulp).
pub const TOL_SOFTMAX: f64 = 1e-4;
/// Attention backward (atomics change the summation order of dQ).
pub const TOL_ATTN_BWD: f64 = 5e-4;
/// cuBLASLt in FP32 (`CUBLAS_COMPUTE_32F`) or on BF16 inputs the CPU reference rounds alike: another
/// summation order over k.
pub const TOL_GEMM: f64 = 1e-4;
/// cuBLASLt in TF32 (10-bit mantissa products, FP32 sums) against the FP32 CPU product, k = 256 terms.
pub const TOL_GEMM_TF32: f64 = 2e-3;

fn drv(e: DriverError) -> Error {
    Error::model(format!("CUDA driver: {e}"))
}

/// A device with every kernel loaded.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    pub limits: ArchLimits,
    funcs: HashMap<String, CudaFunction>,
}

fn cfg(l: &Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: l.dynamic_shared,
    }
}

impl Gpu {
    pub fn open(ordinal: u32) -> Result<Gpu> {
        let dirs = libs::env_dirs();
        let probe = libs::probe_in(&dirs);
        let info = libs::check_device(&probe, ordinal)?;
        let sm = info.capability.0 * 10 + info.capability.1;
        let limits = launch::limits(sm).ok_or_else(|| {
            Error::model(format!(
                "sm_{sm} is not in the launch table (sm_80, 86, 87, 89, 90)"
            ))
        })?;
        let nvrtc = Nvrtc::load(&dirs)?;
        let ctx = CudaContext::new(ordinal as usize).map_err(drv)?;
        let stream = ctx.default_stream();
        let cache = nvrtc::cache_dir();
        let mut funcs = HashMap::new();
        for m in MODULES {
            let c = nvrtc.compile_cached(&cache, m.name, m.source, HEADERS, Target::Cubin(sm))?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(c.binary))
                .map_err(drv)?;
            for k in m.kernels {
                funcs.insert(k.to_string(), module.load_function(k).map_err(drv)?);
            }
        }
        Ok(Gpu {
            ctx,
            stream,
            info,
            limits,
            funcs,
        })
    }

    /// The function of a checked launch (opting in to its dynamic shared memory when it needs to).
    pub fn func(&self, l: &Launch) -> Result<&CudaFunction> {
        l.check(&self.limits)?;
        let f = self
            .funcs
            .get(&l.kernel)
            .ok_or_else(|| Error::model(format!("kernel {} not loaded", l.kernel)))?;
        if l.needs_optin() {
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                l.dynamic_shared as i32,
            )
            .map_err(drv)?;
        }
        Ok(f)
    }

    /// The device's architecture as a number (90 for sm_90).
    pub fn sm(&self) -> u32 {
        self.info.capability.0 * 10 + self.info.capability.1
    }

    pub fn up<T: DeviceRepr>(&self, x: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(x).map_err(drv)
    }
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n.max(1)).map_err(drv)
    }
    pub fn down<T: DeviceRepr + Default + Clone>(&self, x: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(x).map_err(drv)
    }
}

/// Launches `$l` on `$gpu` with the arguments in order (scalars as references to locals).
macro_rules! launch {
    ($gpu:expr, $l:expr; $($arg:expr),* $(,)?) => {{
        let l: Launch = $l;
        let f = $gpu.func(&l)?;
        let mut b = $gpu.stream.launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the arguments match the kernel's signature in kernels/cuda (checked by hand against each
        // `extern "C"` declaration), every buffer is at least as large as the shape the launch was planned for.
        unsafe { b.launch(cfg(&l)) }.map_err(drv)?;
    }};
}

/// One op's comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpOutcome {
    pub op: String,
    /// max |gpu − cpu| / max(1, max |cpu|) over the op's outputs.
    pub error: f64,
    pub tolerance: f64,
    pub ok: bool,
}

fn compare(op: &str, gpu: &[f32], cpu: &[f32], tol: f64) -> OpOutcome {
    let scale = cpu.iter().fold(1.0f64, |m, &x| m.max((x as f64).abs()));
    let mut err = if gpu.len() == cpu.len() {
        0.0f64
    } else {
        f64::INFINITY
    };
    for (a, b) in gpu.iter().zip(cpu) {
        let d = (*a as f64 - *b as f64).abs();
        err = if d.is_nan() {
            f64::INFINITY
        } else {
            err.max(d)
        };
    }
    let error = err / scale;
    OpOutcome {
        op: op.to_string(),
        error,
        tolerance: tol,
        ok: error <= tol,
    }
}

/// Seeded uniform numbers in [-a, a) (xorshift64*).
struct Rng(u64);
impl Rng {
    fn f(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() as f32 / 16_777_216.0 * 2.0 - 1.0) * a)
            .collect()
    }
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as u32
    }
    fn tokens(&mut self, n: usize, vocab: u32) -> Vec<u32> {
        (0..n).map(|_| self.next() % vocab).collect()
    }
}

/// Runs every op on the device against the CPU backend (FP32 activations).
pub fn check_ops(gpu: &Gpu) -> Result<Vec<OpOutcome>> {
    let mut out = Vec::new();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let act = Act::F32;
    let (b, t) = (2usize, 80usize);
    let n = b * t;
    let (c, inter, vocab) = (256usize, 352usize, 1000usize);
    let (ni, ci, ii, vi) = (n as i32, c as i32, inter as i32, vocab as i32);

    // cuBLASLt products, row-major as the model calls them, against the CPU's sgemm: every transpose pair,
    // a padded C and β = 1 (gradient accumulation), in each precision
    {
        let mut lt = Lt::new(gpu.stream.clone(), gpu.sm())?;
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut p = Product::packed(ta, tb, n, inter, c);
            p.ldc += 8;
            p.alpha = 0.5;
            p.beta = 1.0;
            let (na, nb, nc) = p.extents();
            let (a, bm, c0) = (rng.f(na, 1.0), rng.f(nb, 1.0), rng.f(nc, 1.0));
            let cpu = |a: &[f32], b: &[f32]| {
                let mut want = c0.clone();
                sgemm(
                    ta, tb, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, &mut want, p.ldc,
                );
                want
            };
            let want = cpu(&a, &bm);
            let (da, db) = (gpu.up(&a)?, gpu.up(&bm)?);
            for (prec, tol) in [(Precision::F32, TOL_GEMM), (Precision::Tf32, TOL_GEMM_TF32)] {
                let mut dc = gpu.up(&c0)?;
                lt.gemm(&p, prec, &da, &db, &mut dc)?;
                out.push(compare(
                    &format!("gemm {prec:?} ta={ta} tb={tb}"),
                    &gpu.down(&dc)?,
                    &want,
                    tol,
                ));
            }
            let (ab, bb) = (blaslt::to_bf16_bits(&a), blaslt::to_bf16_bits(&bm));
            let want = cpu(&blaslt::from_bf16_bits(&ab), &blaslt::from_bf16_bits(&bb));
            let mut dc = gpu.up(&c0)?;
            lt.gemm(&p, Precision::Bf16, &gpu.up(&ab)?, &gpu.up(&bb)?, &mut dc)?;
            out.push(compare(
                &format!("gemm Bf16 ta={ta} tb={tb}"),
                &gpu.down(&dc)?,
                &want,
                TOL_GEMM,
            ));
        }
    }

    // embedding
    {
        let table = rng.f(vocab * c, 1.0);
        let tok = rng.tokens(n, vocab as u32);
        let (dt, dtok) = (gpu.up(&table)?, gpu.up(&tok)?);
        let mut y = gpu.zeros::<f32>(n * c)?;
        launch!(gpu, launch::embed_fwd(n, act)?; &dt, &dtok, &mut y, &ni, &ci);
        let mut cpu = vec![0.0; n * c];
        ops::embedding_fwd(&tok, &table, c, &mut cpu);
        out.push(compare("embed_fwd", &gpu.down(&y)?, &cpu, 0.0));
        let dout = rng.f(n * c, 1.0);
        let ddout = gpu.up(&dout)?;
        let mut dtable = gpu.zeros::<f32>(vocab * c)?;
        launch!(gpu, launch::embed_bwd(n)?; &ddout, &dtok, &mut dtable, &ni, &ci);
        let mut cpu = vec![0.0; vocab * c];
        ops::embedding_bwd(&tok, &dout, c, &mut cpu);
        out.push(compare(
            "embed_bwd",
            &gpu.down(&dtable)?,
            &cpu,
            TOL_ELEMENTWISE,
        ));
    }

    // RMSNorm
    {
        let (x, w) = (rng.f(n * c, 2.0), rng.f(c, 1.0));
        let eps = 1e-6f32;
        let (dx_, dw_) = (gpu.up(&x)?, gpu.up(&w)?);
        let (mut y, mut rstd) = (gpu.zeros::<f32>(n * c)?, gpu.zeros::<f32>(n)?);
        launch!(gpu, launch::rmsnorm_row("rmsnorm_fwd", n, c, act)?; &dx_, &dw_, &mut y, &mut rstd, &ni, &ci, &eps);
        let (mut cy, mut crs) = (vec![0.0; n * c], vec![0.0; n]);
        ops::rmsnorm_fwd(&x, &w, eps, &mut cy, &mut crs);
        out.push(compare("rmsnorm_fwd", &gpu.down(&y)?, &cy, TOL_ELEMENTWISE));
        let dy = rng.f(n * c, 1.0);
        let (dx0, dw0) = (rng.f(n * c, 0.5), rng.f(c, 0.5));
        let ddy = gpu.up(&dy)?;
        let (mut gdx, mut gdw) = (gpu.up(&dx0)?, gpu.up(&dw0)?);
        let acc = 1i32;
        launch!(gpu, launch::rmsnorm_row("rmsnorm_bwd_dx", n, c, act)?; &dx_, &dw_, &ddy, &rstd, &mut gdx, &ni, &ci, &acc);
        launch!(gpu, launch::rmsnorm_bwd_dw(c, act)?; &dx_, &ddy, &rstd, &mut gdw, &ni, &ci);
        let (mut cdx, mut cdw) = (dx0.clone(), dw0.clone());
        ops::rmsnorm_bwd(&dy, &x, &w, &crs, &mut cdx, &mut cdw);
        out.push(compare(
            "rmsnorm_bwd dx",
            &gpu.down(&gdx)?,
            &cdx,
            TOL_ELEMENTWISE,
        ));
        out.push(compare(
            "rmsnorm_bwd dw",
            &gpu.down(&gdw)?,
            &cdw,
            TOL_ELEMENTWISE,
        ));
    }

    // RoPE, attention (several head dims), decode attention over a KV cache with per-sequence lengths
    for (hq, hkv, d) in [
        (4usize, 2usize, 16usize),
        (4, 2, 32),
        (4, 1, 64),
        (6, 2, 128),
    ] {
        let w = (hq + 2 * hkv) * d;
        let dm = ops::AttnDims {
            b,
            t,
            h: hq,
            kv: hkv,
            d,
        };
        let s = AttnShape { b, t, hq, hkv, d };
        let mut qkv = rng.f(n * w, 1.0);
        let pos: Vec<u32> = (0..n).map(|r| (r % t) as u32).collect();
        let (cos, sin) = ops::rope_tables(t, d, 10_000.0);
        let mut g = gpu.up(&qkv)?;
        let (dpos, dcos, dsin) = (gpu.up(&pos)?, gpu.up(&cos)?, gpu.up(&sin)?);
        let (wi, hqi, hkvi, di, ti, bi) = (
            w as i32, hq as i32, hkv as i32, d as i32, t as i32, b as i32,
        );
        let heads = (hq + hkv) as i32;
        let fwd = 0i32;
        launch!(gpu, launch::rope(n, d, act)?; &mut g, &dpos, &dcos, &dsin, &ni, &wi, &heads, &di, &fwd);
        let upos: Vec<usize> = pos.iter().map(|&p| p as usize).collect();
        ops::rope(&mut qkv, w, hq + hkv, d, &upos, &cos, &sin, false);
        out.push(compare(
            &format!("rope d{d}"),
            &gpu.down(&g)?,
            &qkv,
            TOL_ELEMENTWISE,
        ));
        // attention on the CPU's rotated qkv (so the comparison isolates attention)
        let g = gpu.up(&qkv)?;
        let hd = hq * d;
        let (mut o, mut lse) = (gpu.zeros::<f32>(n * hd)?, gpu.zeros::<f32>(b * hq * t)?);
        let scale = 1.0 / (d as f32).sqrt();
        let (sq, so) = (w as i32, hd as i32);
        {
            let (q, k, v) = (g.slice(0..), g.slice(hd..), g.slice(hd + hkv * d..));
            launch!(gpu, launch::attn_fwd(s, act)?; &q, &k, &v, &mut o, &mut lse, &bi, &ti, &hqi, &hkvi, &sq, &sq, &sq, &so, &scale);
        }
        let mut probs = vec![0.0; b * hq * t * t];
        let mut co = vec![0.0; n * hd];
        ops::attention_fwd(dm, &qkv, &mut probs, &mut co);
        out.push(compare(
            &format!("attn_fwd d{d} gqa {hq}:{hkv}"),
            &gpu.down(&o)?,
            &co,
            TOL_SOFTMAX,
        ));
        let dout = rng.f(n * hd, 1.0);
        let ddout = gpu.up(&dout)?;
        let mut dvec = gpu.zeros::<f32>(b * hq * t)?;
        launch!(gpu, launch::attn_bwd_pre(s, act)?; &o, &ddout, &mut dvec, &bi, &ti, &hqi, &di, &so, &so);
        let (mut dq, mut dk, mut dv) = (
            gpu.zeros::<f32>(n * hd)?,
            gpu.zeros::<f32>(n * hkv * d)?,
            gpu.zeros::<f32>(n * hkv * d)?,
        );
        let sdk = (hkv * d) as i32;
        {
            let (q, k, v) = (g.slice(0..), g.slice(hd..), g.slice(hd + hkv * d..));
            launch!(gpu, launch::attn_bwd(s, act)?; &q, &k, &v, &ddout, &lse, &dvec, &mut dq, &mut dk, &mut dv,
                &bi, &ti, &hqi, &hkvi, &sq, &sq, &sq, &so, &so, &sdk, &scale);
        }
        let mut dqkv = vec![0.0; n * w];
        ops::attention_bwd(dm, &dout, &qkv, &probs, &mut dqkv);
        let cols = |lo: usize, width: usize| -> Vec<f32> {
            (0..n)
                .flat_map(|r| dqkv[r * w + lo..r * w + lo + width].to_vec())
                .collect()
        };
        out.push(compare(
            &format!("attn_bwd dq d{d}"),
            &gpu.down(&dq)?,
            &cols(0, hd),
            TOL_ATTN_BWD,
        ));
        out.push(compare(
            &format!("attn_bwd dk d{d}"),
            &gpu.down(&dk)?,
            &cols(hd, hkv * d),
            TOL_ATTN_BWD,
        ));
        out.push(compare(
            &format!("attn_bwd dv d{d}"),
            &gpu.down(&dv)?,
            &cols(hd + hkv * d, hkv * d),
            TOL_ATTN_BWD,
        ));

        // KV cache: append every row at (sequence, position), decode the last query of lengths t and t - 17
        let tmax = t + 8;
        let seq: Vec<u32> = (0..n).map(|r| (r / t) as u32).collect();
        let (dseq, dposv) = (gpu.up(&seq)?, gpu.up(&pos)?);
        let (mut kc, mut vc) = (
            gpu.zeros::<f32>(b * hkv * tmax * d)?,
            gpu.zeros::<f32>(b * hkv * tmax * d)?,
        );
        let tmaxi = tmax as i32;
        {
            let (k, v) = (g.slice(hd..), g.slice(hd + hkv * d..));
            launch!(gpu, launch::kv_append(n, act)?; &k, &v, &dseq, &dposv, &mut kc, &mut vc, &ni, &hkvi, &di, &tmaxi, &sq, &sq);
        }
        let lens: Vec<u32> = (0..b).map(|i| (t - 17 * (i % 2)) as u32).collect();
        let qrows: Vec<f32> = (0..b)
            .flat_map(|i| qkv[(i * t + lens[i] as usize - 1) * w..][..hd].to_vec())
            .collect();
        let (dq1, dlens) = (gpu.up(&qrows)?, gpu.up(&lens)?);
        let mut o1 = gpu.zeros::<f32>(b * hd)?;
        launch!(gpu, launch::attn_decode(AttnShape { b, ..s }, act)?; &dq1, &kc, &vc, &dlens, &mut o1, &bi, &hqi, &hkvi, &tmaxi, &scale);
        let want: Vec<f32> = (0..b)
            .flat_map(|i| co[(i * t + lens[i] as usize - 1) * hd..][..hd].to_vec())
            .collect();
        out.push(compare(
            &format!("kv_append + attn_decode d{d} (lengths {lens:?})"),
            &gpu.down(&o1)?,
            &want,
            TOL_SOFTMAX,
        ));
        // gather: reversed sequence order
        let idx: Vec<u32> = (0..b as u32).rev().collect();
        let didx = gpu.up(&idx)?;
        let mut kc2 = gpu.zeros::<f32>(b * hkv * tmax * d)?;
        launch!(gpu, launch::kv_gather(b, hkv, act)?; &kc, &mut kc2, &didx, &bi, &hkvi, &di, &tmaxi, &dlens);
        let (src, dst) = (gpu.down(&kc)?, gpu.down(&kc2)?);
        let per = hkv * tmax * d;
        let mut want = vec![0.0f32; b * per];
        for (i, &j) in idx.iter().enumerate() {
            for h in 0..hkv {
                let len = lens[j as usize] as usize * d;
                let (from, to) = ((j as usize * hkv + h) * tmax * d, (i * hkv + h) * tmax * d);
                want[to..to + len].copy_from_slice(&src[from..from + len]);
            }
        }
        out.push(compare(&format!("kv_gather d{d}"), &dst, &want, 0.0));
    }

    // SwiGLU on [gate | up] rows
    {
        let gu = rng.f(n * 2 * inter, 3.0);
        let dgu_ = gpu.up(&gu)?;
        let mut h = gpu.zeros::<f32>(n * inter)?;
        let stride = (2 * inter) as i32;
        {
            let (gg, uu) = (dgu_.slice(0..), dgu_.slice(inter..));
            launch!(gpu, launch::swiglu("swiglu_fwd", n, inter, act)?; &gg, &uu, &mut h, &ni, &ii, &stride);
        }
        let mut ch = vec![0.0; n * inter];
        ops::swiglu_fwd(&gu, &mut ch, inter);
        out.push(compare("swiglu_fwd", &gpu.down(&h)?, &ch, TOL_ELEMENTWISE));
        let dh = rng.f(n * inter, 1.0);
        let ddh = gpu.up(&dh)?;
        let mut dgu = gpu.zeros::<f32>(n * 2 * inter)?;
        {
            let (gg, uu) = (dgu_.slice(0..), dgu_.slice(inter..));
            let (mut dg_ptr, mut du_ptr) = dgu.split_at_mut(inter);
            launch!(gpu, launch::swiglu("swiglu_bwd", n, inter, act)?; &gg, &uu, &ddh, &mut dg_ptr, &mut du_ptr, &ni, &ii, &stride);
        }
        let mut cd = vec![0.0; n * 2 * inter];
        ops::swiglu_bwd(&dh, &gu, &mut cd, inter);
        out.push(compare(
            "swiglu_bwd",
            &gpu.down(&dgu)?,
            &cd,
            TOL_ELEMENTWISE,
        ));
    }

    // fused log-softmax / per-token log-prob and its backward; rows without a target get lse only
    {
        let logits = rng.f(n * vocab, 8.0);
        let tgt: Vec<u32> = (0..n)
            .map(|r| {
                if r % 7 == 0 {
                    u32::MAX
                } else {
                    rng.next() % vocab as u32
                }
            })
            .collect();
        let (dl, dtg) = (gpu.up(&logits)?, gpu.up(&tgt)?);
        let (mut lse, mut lp) = (gpu.zeros::<f32>(n)?, gpu.zeros::<f32>(n)?);
        launch!(gpu, launch::logprob("logprob_fwd", n, act)?; &dl, &dtg, &mut lse, &mut lp, &ni, &vi);
        let clse: Vec<f32> = (0..n)
            .map(|r| ops::logsumexp(&logits[r * vocab..(r + 1) * vocab]))
            .collect();
        let clp: Vec<f32> = (0..n)
            .map(|r| {
                if tgt[r] == u32::MAX {
                    0.0
                } else {
                    logits[r * vocab + tgt[r] as usize] - clse[r]
                }
            })
            .collect();
        out.push(compare(
            "logprob_fwd lse",
            &gpu.down(&lse)?,
            &clse,
            TOL_SOFTMAX,
        ));
        out.push(compare(
            "logprob_fwd logp",
            &gpu.down(&lp)?,
            &clp,
            TOL_SOFTMAX,
        ));
        let coef: Vec<f32> = (0..n)
            .map(|r| {
                if tgt[r] == u32::MAX {
                    0.0
                } else {
                    -1.0 / n as f32
                }
            })
            .collect();
        let dcoef = gpu.up(&coef)?;
        let mut dlog = gpu.zeros::<f32>(n * vocab)?;
        launch!(gpu, launch::logprob("logprob_bwd", n, act)?; &dl, &dtg, &lse, &dcoef, &mut dlog, &ni, &vi);
        let mut cd = vec![0.0f32; n * vocab];
        for r in 0..n {
            for v in 0..vocab {
                let p = (logits[r * vocab + v] - clse[r]).exp();
                cd[r * vocab + v] = coef[r] * (if v as u32 == tgt[r] { 1.0 } else { 0.0 } - p);
            }
        }
        out.push(compare("logprob_bwd", &gpu.down(&dlog)?, &cd, TOL_SOFTMAX));
    }

    // GRPO (PPO-clip + k3 KL) and SFT per-token loss gradients and sums
    {
        let m = 1000usize;
        let logp = rng.f(m, 3.0).iter().map(|x| x - 3.0).collect::<Vec<_>>();
        let old: Vec<f32> = logp.iter().zip(rng.f(m, 0.5)).map(|(a, d)| a + d).collect();
        let refp: Vec<f32> = logp.iter().zip(rng.f(m, 0.5)).map(|(a, d)| a + d).collect();
        let adv = rng.f(m, 2.0);
        let weight = vec![1.0 / m as f32; m];
        let (clip, kl) = (0.2f32, 0.05f32);
        let (dlp, dold, dref, dadv, dw) = (
            gpu.up(&logp)?,
            gpu.up(&old)?,
            gpu.up(&refp)?,
            gpu.up(&adv)?,
            gpu.up(&weight)?,
        );
        let (mut coef, mut sums) = (gpu.zeros::<f32>(m)?, gpu.zeros::<f32>(3)?);
        let mi = m as i32;
        launch!(gpu, launch::token_loss("grpo_loss", m)?; &dlp, &dold, &dref, &dadv, &dw, &mut coef, &mut sums, &mi, &clip, &kl);
        let spec = LossSpec::Grpo {
            clip_eps: clip,
            kl_coef: kl,
        };
        let mut ccoef = vec![0.0f32; m];
        let (mut sl, mut sk, mut sc) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..m {
            let (l, k, clipped, d) = token_loss(&spec, logp[i], adv[i], old[i], refp[i]);
            ccoef[i] = weight[i] * d;
            sl += weight[i] as f64 * l;
            sk += weight[i] as f64 * k;
            sc += clipped as u8 as f64;
        }
        out.push(compare(
            "grpo_loss dL/dlogp",
            &gpu.down(&coef)?,
            &ccoef,
            TOL_ELEMENTWISE,
        ));
        out.push(compare(
            "grpo_loss sums",
            &gpu.down(&sums)?,
            &[sl as f32, sk as f32, sc as f32],
            TOL_ELEMENTWISE,
        ));
        let (mut coef, mut sums) = (gpu.zeros::<f32>(m)?, gpu.zeros::<f32>(1)?);
        launch!(gpu, launch::token_loss("sft_loss", m)?; &dlp, &dw, &mut coef, &mut sums, &mi);
        let csum: f64 = (0..m)
            .map(|i| weight[i] as f64 * token_loss(&LossSpec::Sft, logp[i], 0.0, 0.0, 0.0).0)
            .sum();
        let ccoef: Vec<f32> = (0..m)
            .map(|i| weight[i] * token_loss(&LossSpec::Sft, logp[i], 0.0, 0.0, 0.0).3)
            .collect();
        out.push(compare(
            "sft_loss dL/dlogp",
            &gpu.down(&coef)?,
            &ccoef,
            TOL_ELEMENTWISE,
        ));
        out.push(compare(
            "sft_loss sum",
            &gpu.down(&sums)?,
            &[csum as f32],
            TOL_ELEMENTWISE,
        ));
    }

    // gradient norm, clipping and AdamW
    {
        let np = 1_000_003usize;
        let (p, g) = (rng.f(np, 1.0), rng.f(np, 0.01));
        let (m0, v0) = (
            rng.f(np, 0.01),
            rng.f(np, 1e-4).iter().map(|x| x.abs()).collect::<Vec<_>>(),
        );
        let dg = gpu.up(&g)?;
        let part_l = launch::sumsq_partial(np)?;
        let parts = part_l.grid.0 as usize;
        let mut partial = gpu.zeros::<f64>(parts)?;
        let npi = np as i64;
        launch!(gpu, part_l; &dg, &npi, &mut partial);
        let (partsi, max_norm) = (parts as i32, 1.0f32);
        let mut nrm = gpu.zeros::<f32>(2)?;
        launch!(gpu, launch::sumsq_final(); &partial, &partsi, &max_norm, &mut nrm);
        let norm = ops::sum_squares(&g).sqrt();
        let want_scale = if norm > max_norm as f64 {
            (max_norm as f64 / (norm + 1e-6)) as f32
        } else {
            1.0
        };
        let got = gpu.down(&nrm)?;
        out.push(compare(
            "grad norm + clip scale",
            &got,
            &[norm as f32, want_scale],
            TOL_ELEMENTWISE,
        ));
        let (mut dp, mut dm, mut dv) = (gpu.up(&p)?, gpu.up(&m0)?, gpu.up(&v0)?);
        let st = ops::AdamWStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            bc1: 1.0 - 0.9f32.powi(3),
            bc2: 1.0 - 0.95f32.powi(3),
            gscale: got[1],
        };
        let wd = 0.01f32;
        let gscale = nrm.slice(1..);
        launch!(gpu, launch::elementwise("adamw", np)?; &mut dp, &dg, &mut dm, &mut dv, &npi, &st.lr, &st.beta1, &st.beta2, &st.eps, &wd, &st.bc1, &st.bc2, &gscale);
        let mut gs = gpu.up(&g)?;
        launch!(gpu, launch::elementwise("scale_inplace", np)?; &mut gs, &npi, &gscale);
        let mut cg = g.clone();
        ops::scale_inplace(&mut cg, got[1]);
        out.push(compare(
            "scale_inplace (clipping)",
            &gpu.down(&gs)?,
            &cg,
            TOL_ELEMENTWISE,
        ));
        let mut bf = gpu.zeros::<u16>(np)?;
        let dpf = gpu.up(&p)?;
        launch!(gpu, launch::elementwise("cast_bf16", np)?; &dpf, &mut bf, &npi);
        let bits: Vec<f32> = gpu.down(&bf)?.iter().map(|&b| b as f32).collect();
        let want: Vec<f32> = p
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_bits() as f32)
            .collect();
        out.push(compare("cast_bf16 (bit patterns)", &bits, &want, 0.0));
        let (mut cp, mut cm, mut cv) = (p.clone(), m0.clone(), v0.clone());
        ops::adamw(&mut cp, &g, &mut cm, &mut cv, st, wd);
        out.push(compare(
            "adamw params",
            &gpu.down(&dp)?,
            &cp,
            TOL_ELEMENTWISE,
        ));
        out.push(compare("adamw m", &gpu.down(&dm)?, &cm, TOL_ELEMENTWISE));
        out.push(compare("adamw v", &gpu.down(&dv)?, &cv, TOL_ELEMENTWISE));
    }

    // sampling: greedy = argmax (lowest id on ties), a vanishing top-p keeps only the most likely token,
    // log-probs are the untempered model's, stop tokens and the length limit finish a sequence
    {
        let rows = 8usize;
        let logits = rng.f(rows * vocab, 6.0);
        let dl = gpu.up(&logits)?;
        let stop = vec![logits_argmax(&logits[..vocab]) as u32];
        let dstop = gpu.up(&stop)?;
        let lens: Vec<u32> = (0..rows as u32).map(|i| 10 + i).collect();
        let dlens = gpu.up(&lens)?;
        let want_tok: Vec<f32> = (0..rows)
            .map(|r| logits_argmax(&logits[r * vocab..(r + 1) * vocab]) as f32)
            .collect();
        let want_lp: Vec<f32> = (0..rows)
            .map(|r| {
                logits[r * vocab + want_tok[r] as usize]
                    - ops::logsumexp(&logits[r * vocab..(r + 1) * vocab])
            })
            .collect();
        let want_fin: Vec<f32> = (0..rows)
            .map(|r| {
                if want_tok[r] as u32 == stop[0] || lens[r] + 1 >= 16 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        for (name, temp, top_p) in [("greedy", 0.0f32, 1.0f32), ("top-p 1e-6 at T=1", 1.0, 1e-6)] {
            let (mut tok, mut lp, mut fin) = (
                gpu.zeros::<u32>(rows)?,
                gpu.zeros::<f32>(rows)?,
                gpu.zeros::<u8>(rows)?,
            );
            let (ri, seed, step, nstop, maxlen) = (rows as i32, 7u64, 3u32, 1i32, 16u32);
            launch!(gpu, launch::sample_rows(rows, act)?; &dl, &ri, &vi, &temp, &top_p, &seed, &step, &dstop, &nstop, &dlens, &maxlen, &mut tok, &mut lp, &mut fin);
            let tok: Vec<f32> = gpu.down(&tok)?.iter().map(|&x| x as f32).collect();
            out.push(compare(
                &format!("sample_rows {name}: tokens"),
                &tok,
                &want_tok,
                0.0,
            ));
            out.push(compare(
                &format!("sample_rows {name}: log-probs"),
                &gpu.down(&lp)?,
                &want_lp,
                TOL_SOFTMAX,
            ));
            let fin: Vec<f32> = gpu.down(&fin)?.iter().map(|&x| x as f32).collect();
            out.push(compare(
                &format!("sample_rows {name}: finished"),
                &fin,
                &want_fin,
                0.0,
            ));
        }
    }
    gpu.stream.synchronize().map_err(drv)?;
    Ok(out)
}

/// Throughput of one product shape on the device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GemmRate {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub precision: String,
    /// Time per product (median round).
    pub millis: f64,
    pub tflops: f64,
}

/// The products a training step of a Qwen2.5-0.5B-shaped model issues at 4096 tokens per micro-batch (d 896,
/// MLP 4864, vocabulary 151936; Q/O, K/V at 2 × 64 of 14 × 64 heads, gate/up, down, LM head), and a square
/// 4096³ for the device's peak; forward shapes, C = A·Bᵀ as the model multiplies by weights.
pub const RATE_SHAPES: [(usize, usize, usize); 6] = [
    (4096, 896, 896),
    (4096, 128, 896),
    (4096, 9728, 896),
    (4096, 896, 4864),
    (4096, 151_936, 896),
    (4096, 4096, 4096),
];

/// `warm` untimed products, then `ROUNDS` rounds of `reps` back-to-back products (launch overhead hidden as
/// in a step): milliseconds per product of each round.
#[allow(clippy::too_many_arguments)]
fn time_rounds<T: blaslt::Input>(
    gpu: &Gpu,
    lt: &mut Lt,
    p: &Product,
    prec: Precision,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    c: &mut CudaSlice<f32>,
    reps: usize,
    warm: usize,
) -> Result<Vec<f64>> {
    for _ in 0..warm {
        lt.gemm(p, prec, a, b, c)?;
    }
    gpu.stream.synchronize().map_err(drv)?;
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = std::time::Instant::now();
        for _ in 0..reps {
            lt.gemm(p, prec, a, b, c)?;
        }
        gpu.stream.synchronize().map_err(drv)?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    }
    Ok(times)
}

/// Rounds of timed products per shape and precision; the median round is reported.
const ROUNDS: usize = 5;

/// Times each shape in each precision through the same cuBLASLt plans the model uses: `warm` untimed
/// products, then `ROUNDS` rounds of `reps` back-to-back products; the median round's time per product.
pub fn gemm_rates(
    gpu: &Gpu,
    precisions: &[Precision],
    reps: usize,
    warm: usize,
) -> Result<Vec<GemmRate>> {
    let mut lt = Lt::new(gpu.stream.clone(), gpu.sm())?;
    let mut rng = Rng(0x5eed_0000_0000_0042);
    let mut out = Vec::new();
    for &(m, n, k) in &RATE_SHAPES {
        let p = Product::packed(false, true, m, n, k);
        let (na, nb, nc) = p.extents();
        let (a, b) = (rng.f(na, 1.0), rng.f(nb, 1.0));
        let mut dc = gpu.zeros::<f32>(nc)?;
        for &prec in precisions {
            let mut times = if prec == Precision::Bf16 {
                let (da, db) = (
                    gpu.up(&blaslt::to_bf16_bits(&a))?,
                    gpu.up(&blaslt::to_bf16_bits(&b))?,
                );
                time_rounds(gpu, &mut lt, &p, prec, &da, &db, &mut dc, reps, warm)?
            } else {
                let (da, db) = (gpu.up(&a)?, gpu.up(&b)?);
                time_rounds(gpu, &mut lt, &p, prec, &da, &db, &mut dc, reps, warm)?
            };
            times.sort_by(f64::total_cmp);
            let millis = times[times.len() / 2];
            out.push(GemmRate {
                m,
                n,
                k,
                precision: format!("{prec:?}").to_lowercase(),
                millis,
                tflops: 2.0 * (m * n * k) as f64 / (millis * 1e-3) / 1e12,
            });
        }
    }
    Ok(out)
}

fn logits_argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// The JSON report of the op check.
pub fn report_json(info: &DeviceInfo, outcomes: &[OpOutcome], rates: &[GemmRate]) -> String {
    let doc = serde_json::json!({
        "device": info.name,
        "capability": format!("{}.{}", info.capability.0, info.capability.1),
        "ok": outcomes.iter().all(|o| o.ok),
        "ops": outcomes,
        "gemm": rates,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn compare_is_relative_to_the_reference_and_fails_nan_and_length() {
        assert!(compare("x", &[1.0, 2.0], &[1.0, 2.0], 0.0).ok);
        let o = compare("x", &[100.0, 0.0], &[100.01, 0.0], 1e-3);
        assert!(o.ok && (o.error - 1e-4).abs() < 1e-6, "{o:?}");
        assert!(!compare("x", &[0.5], &[0.4], 1e-3).ok);
        assert!(!compare("x", &[f32::NAN], &[0.0], 1.0).ok);
        assert!(!compare("x", &[0.0], &[0.0, 0.0], 1.0).ok);
    }

    /// Without a driver (this machine, CI), opening a device is the named error, not a panic.
    #[test]
    fn open_without_a_driver_is_cuda_unavailable() {
        if libs::probe().driver.found.is_some() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let e = Gpu::open(0).err().expect("no device here");
        assert_eq!(e.code, ErrorCode::CudaUnavailable);
        assert!(e.message.contains("libcuda.so.1"), "{}", e.message);
    }
}
