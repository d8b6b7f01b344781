//! Fused non-matrix kernels of the CPU backend: RMSNorm, rotary positions, causal GQA attention (training and
//! KV-cache decode), SwiGLU, row log-softmax, AdamW, norms. Each is a forward/backward pair where the model
//! needs one, works on row-major f32 buffers whose shapes are given in the doc comments, and spreads its rows
//! (or (sequence, head) pairs) over the backend threads.
//!
//! Notation: N = rows (tokens), C = hidden size, D = head dim, H = query heads, KV = key/value heads,
//! W = (H + 2·KV)·D = width of a fused qkv row laid out [q heads | k heads | v heads], I = intermediate size.

use super::gemm::{self, Gemm, Mat};
use super::threads::{par_reduce_into, par_rows, par_rows2, parallel_for, SharedMut};

/// Defines a function whose body is compiled twice — for AVX2+FMA and for the baseline target — and picks the
/// AVX2 copy at run time when the CPU has it (loops in the body, and the `#[inline]` helpers it calls, then
/// vectorise 8 lanes wide).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn fast($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            {
                if super::gemm_avx2::available() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

// ---------------------------------------------------------------------------------------------------------------
// Small vector helpers (written with 8 independent accumulators so LLVM vectorises them).

/// Σ a[i]·b[i].
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// y += alpha·x.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

/// exp(x) for f32 without libm calls, so loops over it vectorise: 2^n·P(r), r = x − n·ln2 ∈ [−ln2/2, ln2/2],
/// P the degree-6 Taylor polynomial (relative error < 2e-7); inputs clamped to [−87, 88].
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to the nearest integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// σ(x) = 1 / (1 + e^−x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding.

/// out[n, :] = table[tokens[n], :]. table: (V, C), out: (N, C). Tokens must be < V (validated by the model).
pub fn embedding_fwd(tokens: &[u32], table: &[f32], c: usize, out: &mut [f32]) {
    for (n, &t) in tokens.iter().enumerate() {
        let t = t as usize;
        out[n * c..(n + 1) * c].copy_from_slice(&table[t * c..(t + 1) * c]);
    }
}

/// dtable[tokens[n], :] += dout[n, :].
pub fn embedding_bwd(tokens: &[u32], dout: &[f32], c: usize, dtable: &mut [f32]) {
    for (n, &t) in tokens.iter().enumerate() {
        let t = t as usize;
        axpy(
            1.0,
            &dout[n * c..(n + 1) * c],
            &mut dtable[t * c..(t + 1) * c],
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm: y = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps).

/// x, out: (N, C); w: (C); rstd: (N) saved for the backward pass.
pub fn rmsnorm_fwd(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], rstd: &mut [f32]) {
    let c = w.len();
    par_rows2(out, c, rstd, 1, 64, |r0, o, rs| {
        for (i, (orow, r)) in o.chunks_exact_mut(c).zip(rs.iter_mut()).enumerate() {
            *r = rmsnorm_row(&x[(r0 + i) * c..(r0 + i + 1) * c], w, eps, orow);
        }
    });
}

multiversion! {
    /// One row of `rmsnorm_fwd`; returns rstd.
    fn rmsnorm_row(xr: &[f32], w: &[f32], eps: f32, orow: &mut [f32]) -> f32 {
        let ms = dot(xr, xr) / xr.len() as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for ((ov, xv), wv) in orow.iter_mut().zip(xr).zip(w) {
            *ov = xv * s * wv;
        }
        s
    }
}

multiversion! {
    /// One row of `rmsnorm_bwd` for dx (accumulated).
    fn rmsnorm_bwd_row(dy: &[f32], xr: &[f32], w: &[f32], s: f32, dxr: &mut [f32]) {
        let c = xr.len();
        let mut acc = [0.0f32; 8];
        for j8 in 0..c / 8 {
            for (l, a) in acc.iter_mut().enumerate() {
                let j = j8 * 8 + l;
                *a += w[j] * dy[j] * xr[j];
            }
        }
        let mut a: f32 = acc.iter().sum();
        for j in (c / 8) * 8..c {
            a += w[j] * dy[j] * xr[j];
        }
        let k = s * s * s * a / c as f32;
        for j in 0..c {
            dxr[j] += s * w[j] * dy[j] - k * xr[j];
        }
    }
}

multiversion! {
    /// part += dy ∘ x · s (the dw contribution of one row).
    fn rmsnorm_dw_row(dy: &[f32], xr: &[f32], s: f32, part: &mut [f32]) {
        for ((p, d), x) in part.iter_mut().zip(dy).zip(xr) {
            *p += d * x * s;
        }
    }
}

/// Backward of `rmsnorm_fwd`: dx += ∂L/∂x, dw += ∂L/∂w. dout, x, dx: (N, C); w, dw: (C); rstd: (N).
/// dx_i = s·w_i·dy_i − s³/C · x_i · Σ_j w_j·dy_j·x_j;  dw_i = Σ_rows dy_i·x_i·s.
pub fn rmsnorm_bwd(
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
) {
    let c = w.len();
    let rows = rstd.len();
    par_rows(dx, c, 64, |r0, dxb| {
        for (i, dxr) in dxb.chunks_exact_mut(c).enumerate() {
            let n = r0 + i;
            rmsnorm_bwd_row(
                &dout[n * c..(n + 1) * c],
                &x[n * c..(n + 1) * c],
                w,
                rstd[n],
                dxr,
            );
        }
    });
    par_reduce_into(rows, 64, dw, |a, b, part| {
        for n in a..b {
            rmsnorm_dw_row(
                &dout[n * c..(n + 1) * c],
                &x[n * c..(n + 1) * c],
                rstd[n],
                part,
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Rotary positions (Hugging Face "rotate_half" layout: pairs (i, i + D/2), frequency theta^(−2i/D)).

/// cos/sin tables of shape (max_pos, D/2).
pub fn rope_tables(max_pos: usize, d: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = d / 2;
    let mut cos = vec![0.0f32; max_pos * half];
    let mut sin = vec![0.0f32; max_pos * half];
    for p in 0..max_pos {
        for i in 0..half {
            let inv = (theta as f64).powf(-(2.0 * i as f64) / d as f64);
            let ang = p as f64 * inv;
            cos[p * half + i] = ang.cos() as f32;
            sin[p * half + i] = ang.sin() as f32;
        }
    }
    (cos, sin)
}

/// Rotates the first `heads` D-wide heads of every row of x (rows of width `w`) by the angle of the row's
/// position; `inverse` rotates by the negative angle (the backward pass of a rotation is its inverse).
/// x: (N, w), pos: (N).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &mut [f32],
    w: usize,
    heads: usize,
    d: usize,
    pos: &[usize],
    cos: &[f32],
    sin: &[f32],
    inverse: bool,
) {
    let half = d / 2;
    let sign = if inverse { -1.0f32 } else { 1.0 };
    par_rows(x, w, 64, |r0, blk| {
        for (i, row) in blk.chunks_exact_mut(w).enumerate() {
            let p = pos[r0 + i];
            rope_row(
                row,
                heads,
                d,
                &cos[p * half..(p + 1) * half],
                &sin[p * half..(p + 1) * half],
                sign,
            );
        }
    });
}

multiversion! {
    /// Rotates `heads` D-wide heads of one row by (cos, sin·sign).
    fn rope_row(row: &mut [f32], heads: usize, d: usize, c: &[f32], s: &[f32], sign: f32) {
        let half = d / 2;
        for h in 0..heads {
            let (lo, hi) = row[h * d..(h + 1) * d].split_at_mut(half);
            for j in 0..half {
                let (a, b) = (lo[j], hi[j]);
                let sn = sign * s[j];
                lo[j] = a * c[j] - b * sn;
                hi[j] = b * c[j] + a * sn;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Causal grouped-query attention over padded batches (training / full forward).

#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub kv: usize,
    pub d: usize,
}
impl AttnDims {
    pub fn w(&self) -> usize {
        (self.h + 2 * self.kv) * self.d
    }
}

/// Query rows per block of the blocked causal attention: block [r0, r1) only meets keys 0..r1.
const ATT_BLOCK: usize = 64;

/// Causal softmax of the rows [r0, r0 + rows) of a score block (row stride ld): entries j ≤ i are
/// normalised, entries j > i set to 0. Row i of the block is query position r0 + i.
fn causal_softmax_rows(s: &mut [f32], ld: usize, r0: usize, rows: usize, ncols: usize) {
    for i in 0..rows {
        let t = r0 + i;
        let row = &mut s[i * ld..i * ld + ncols];
        softmax_prefix(row, t + 1);
    }
}

multiversion! {
    /// row[..n] = softmax(row[..n]); row[n..] = 0.
    fn softmax_prefix(row: &mut [f32], n: usize) {
        let (head, tail) = row.split_at_mut(n);
        let mx = head.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for x in head.iter_mut() {
            *x = exp_f32(*x - mx);
            sum += *x;
        }
        let inv = 1.0 / sum;
        head.iter_mut().for_each(|x| *x *= inv);
        tail.iter_mut().for_each(|x| *x = 0.0);
    }
}

multiversion! {
    /// dS = P ∘ (dP − Σ_j P∘dP) · scale on one row (in place over dP, first n entries; the rest 0).
    fn softmax_bwd_row(p: &[f32], dp: &mut [f32], n: usize, scale: f32) {
        let mut acc = [0.0f32; 8];
        let (pc, dc) = (p[..n].chunks_exact(8), dp[..n].chunks_exact(8));
        let (pr, dr) = (pc.remainder(), dc.remainder());
        for (x, y) in pc.zip(dc) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in pr.iter().zip(dr) {
            sum += x * y;
        }
        for (d, &pv) in dp[..n].iter_mut().zip(&p[..n]) {
            *d = pv * (*d - sum) * scale;
        }
        dp[n..].iter_mut().for_each(|x| *x = 0.0);
    }
}

/// qkv: (B·T, W) after RoPE; probs: (B, H, T, T) causal softmax rows (entries j > t are 0); out: (B·T, H·D).
/// Query head h reads key/value head h / (H/KV). One task per (sequence, head); within a task the products
/// S = QKᵀ·scale and O = P·V run as GEMMs over blocks of ATT_BLOCK query rows, each block meeting only the keys
/// at or before its last row.
pub fn attention_fwd(dm: AttnDims, qkv: &[f32], probs: &mut [f32], out: &mut [f32]) {
    let AttnDims {
        b: _,
        t: tt,
        h: nh,
        kv,
        d,
    } = dm;
    let w = dm.w();
    let hd = nh * d;
    let group = nh / kv;
    let scale = 1.0 / (d as f32).sqrt();
    let path = gemm::path();
    let probs_s = SharedMut::new(probs);
    let out_s = SharedMut::new(out);
    parallel_for(dm.b * nh, |task| {
        let (bi, h) = (task / nh, task % nh);
        let g = h / group;
        let base = bi * tt * w;
        let (q, k, v) = (
            &qkv[base + h * d..],
            &qkv[base + hd + g * d..],
            &qkv[base + hd + kv * d + g * d..],
        );
        // SAFETY: task (bi, h) owns probs[(bi·H + h)·T·T ..][..T·T] and the D columns of head h in the rows of
        // sequence bi of `out`; no other task touches them.
        let p = unsafe { probs_s.slice((bi * nh + h) * tt * tt, tt * tt) };
        let mut o = vec![0.0f32; tt * d];
        let mut r0 = 0;
        while r0 < tt {
            let r1 = (r0 + ATT_BLOCK).min(tt);
            let rb = r1 - r0;
            let pb = &mut p[r0 * tt..];
            Gemm {
                m: rb,
                n: r1,
                k: d,
                alpha: scale,
                a: Mat::n(&q[r0 * w..], w),
                b: Mat::t(k, w),
                beta: 0.0,
            }
            .serial(path, pb, tt);
            causal_softmax_rows(pb, tt, r0, rb, tt);
            Gemm {
                m: rb,
                n: d,
                k: r1,
                alpha: 1.0,
                a: Mat::n(pb, tt),
                b: Mat::n(v, w),
                beta: 0.0,
            }
            .serial(path, &mut o[r0 * d..], d);
            r0 = r1;
        }
        for t in 0..tt {
            let dst = unsafe { out_s.slice((bi * tt + t) * hd + h * d, d) };
            dst.copy_from_slice(&o[t * d..(t + 1) * d]);
        }
    });
}

/// Backward of `attention_fwd`: writes (overwrites) dq, dk, dv into dqkv (B·T, W) from dout (B·T, H·D).
/// One task per (sequence, kv head): it owns its kv head's dk/dv columns and the dq columns of its query
/// group. Per query head and block of query rows [r0, r1):
///   dP = dO·Vᵀ;  dS = P∘(dP − rowsum(P∘dP))·scale;  dQ = dS·K;  dK += dSᵀ·Q;  dV += Pᵀ·dO.
pub fn attention_bwd(dm: AttnDims, dout: &[f32], qkv: &[f32], probs: &[f32], dqkv: &mut [f32]) {
    let AttnDims {
        b: _,
        t: tt,
        h: nh,
        kv,
        d,
    } = dm;
    let w = dm.w();
    let hd = nh * d;
    let group = nh / kv;
    let scale = 1.0 / (d as f32).sqrt();
    let path = gemm::path();
    let dqkv_s = SharedMut::new(dqkv);
    parallel_for(dm.b * kv, |task| {
        let (bi, g) = (task / kv, task % kv);
        let base = bi * tt * w;
        let koff = hd + g * d;
        let voff = hd + kv * d + g * d;
        let (k, v) = (&qkv[base + koff..], &qkv[base + voff..]);
        let mut dk = vec![0.0f32; tt * d];
        let mut dv = vec![0.0f32; tt * d];
        let mut dq = vec![0.0f32; tt * d];
        let mut ds = vec![0.0f32; ATT_BLOCK.min(tt) * tt];
        for h in g * group..(g + 1) * group {
            let q = &qkv[base + h * d..];
            let dy = &dout[bi * tt * hd + h * d..];
            let p = &probs[(bi * nh + h) * tt * tt..(bi * nh + h + 1) * tt * tt];
            let mut r0 = 0;
            while r0 < tt {
                let r1 = (r0 + ATT_BLOCK).min(tt);
                let rb = r1 - r0;
                let pb = &p[r0 * tt..];
                Gemm {
                    m: rb,
                    n: r1,
                    k: d,
                    alpha: 1.0,
                    a: Mat::n(&dy[r0 * hd..], hd),
                    b: Mat::t(v, w),
                    beta: 0.0,
                }
                .serial(path, &mut ds, r1);
                for i in 0..rb {
                    softmax_bwd_row(
                        &pb[i * tt..i * tt + r1],
                        &mut ds[i * r1..(i + 1) * r1],
                        r0 + i + 1,
                        scale,
                    );
                }
                Gemm {
                    m: rb,
                    n: d,
                    k: r1,
                    alpha: 1.0,
                    a: Mat::n(&ds, r1),
                    b: Mat::n(k, w),
                    beta: 0.0,
                }
                .serial(path, &mut dq[r0 * d..], d);
                Gemm {
                    m: r1,
                    n: d,
                    k: rb,
                    alpha: 1.0,
                    a: Mat::t(&ds, r1),
                    b: Mat::n(&q[r0 * w..], w),
                    beta: 1.0,
                }
                .serial(path, &mut dk, d);
                Gemm {
                    m: r1,
                    n: d,
                    k: rb,
                    alpha: 1.0,
                    a: Mat::t(pb, tt),
                    b: Mat::n(&dy[r0 * hd..], hd),
                    beta: 1.0,
                }
                .serial(path, &mut dv, d);
                r0 = r1;
            }
            for t in 0..tt {
                // SAFETY: dq columns of head h (in group g) of sequence bi belong to this task only.
                let dst = unsafe { dqkv_s.slice(base + t * w + h * d, d) };
                dst.copy_from_slice(&dq[t * d..(t + 1) * d]);
            }
        }
        for t in 0..tt {
            // SAFETY: dk/dv columns of kv head g of sequence bi belong to this task only.
            unsafe {
                dqkv_s
                    .slice(base + t * w + koff, d)
                    .copy_from_slice(&dk[t * d..(t + 1) * d]);
                dqkv_s
                    .slice(base + t * w + voff, d)
                    .copy_from_slice(&dv[t * d..(t + 1) * d]);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Attention against a KV cache (sampling).

/// One query row per entry: q rows (R, W) (only the first H·D columns are read), the row's cache slot and
/// position. For one layer the key cache is stored TRANSPOSED, (slots, KV, D, max_t) — so q·kⱼ for all
/// positions j is a sum of D contiguous axpys, with no horizontal reductions — and the value cache row-major,
/// (slots, max_t, KV·D). Both already contain positions 0..=pos of the slot. out: (R, H·D). With AVX2/FMA, D a
/// multiple of 8 and max_t a multiple of 8 (the sampler rounds its cache up), rows run through
/// `attention_cached_row_avx2`; otherwise through the portable `attention_cached_row`.
#[allow(clippy::too_many_arguments)]
pub fn attention_cached(
    q: &[f32],
    w: usize,
    nh: usize,
    kv: usize,
    d: usize,
    slot: &[usize],
    pos: &[usize],
    kcache_t: &[f32],
    vcache: &[f32],
    max_t: usize,
    out: &mut [f32],
) {
    let hd = nh * d;
    let kvd = kv * d;
    let group = nh / kv;
    let scale = 1.0 / (d as f32).sqrt();
    #[cfg(target_arch = "x86_64")]
    let fast = super::gemm_avx2::available() && d.is_multiple_of(8) && max_t.is_multiple_of(8);
    #[cfg(not(target_arch = "x86_64"))]
    let fast = false;
    par_rows(out, hd, 4, |r0, blk| {
        let mut sc = Vec::new();
        for (i, orow) in blk.chunks_exact_mut(hd).enumerate() {
            let r = r0 + i;
            let (s, p) = (slot[r], pos[r]);
            let kt = &kcache_t[s * kvd * max_t..(s + 1) * kvd * max_t];
            let vs = &vcache[s * max_t * kvd..(s + 1) * max_t * kvd];
            let qr = &q[r * w..r * w + hd];
            if fast {
                sc.resize(2 * (p + 1).div_ceil(8) * 8, 0.0f32);
                // SAFETY: AVX2+FMA present; d and max_t are multiples of 8 and p < max_t (checked above and by
                // the caller's cache layout), as `attention_cached_row_avx2` requires.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    attention_cached_row_avx2(
                        qr,
                        kt,
                        vs,
                        max_t,
                        kvd,
                        group,
                        d,
                        p + 1,
                        scale,
                        &mut sc,
                        orow,
                    )
                };
            } else {
                sc.resize(p + 1, 0.0f32);
                attention_cached_row(qr, kt, vs, max_t, kvd, group, d, scale, &mut sc, orow);
            }
        }
    });
}

/// `attention_cached_row` with AVX2/FMA register tiles: the query heads of a key/value group are taken two at a
/// time, so each key and value vector loaded serves both; scores are computed in blocks of 32 (then 8)
/// positions held in registers across the D products (eight independent FMA chains), then a vectorised
/// softmax, then the value sums in blocks of 32 (or 8) columns. Scores are computed for whole blocks of 8
/// positions (up to n rounded up, within the cache's max_t) and only the first n are used.
///
/// # Safety
/// AVX2+FMA; d and max_t multiples of 8; 1 ≤ n ≤ max_t; kt holds (KV, D, max_t) and v (max_t, KV·D) floats;
/// sc holds ≥ 2·⌈n/8⌉·8 floats; q and orow H·D.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attention_cached_row_avx2(
    q: &[f32],
    kt: &[f32],
    v: &[f32],
    max_t: usize,
    kvd: usize,
    group: usize,
    d: usize,
    n: usize,
    scale: f32,
    sc: &mut [f32],
    orow: &mut [f32],
) {
    let nh = q.len() / d;
    let npad = n.div_ceil(8) * 8;
    debug_assert!(
        npad <= max_t && sc.len() >= 2 * npad && kt.len() >= kvd * max_t && v.len() >= n * kvd
    );
    let (s0, s1) = sc.split_at_mut(npad);
    let mut h = 0;
    while h < nh {
        let g = h / group;
        let pair = h + 1 < nh && (h + 1) / group == g;
        let kg = kt.as_ptr().add(g * d * max_t);
        let q0 = q.as_ptr().add(h * d);
        let q1 = if pair {
            q.as_ptr().add((h + 1) * d)
        } else {
            q0
        };
        let (p0, p1) = (s0.as_mut_ptr(), s1.as_mut_ptr());
        let mut j0 = 0;
        while j0 + 32 <= npad {
            if pair {
                qk_tile::<4, 2>(q0, q1, kg, max_t, d, j0, scale, p0, p1);
            } else {
                qk_tile::<4, 1>(q0, q1, kg, max_t, d, j0, scale, p0, p1);
            }
            j0 += 32;
        }
        while j0 < npad {
            if pair {
                qk_tile::<1, 2>(q0, q1, kg, max_t, d, j0, scale, p0, p1);
            } else {
                qk_tile::<1, 1>(q0, q1, kg, max_t, d, j0, scale, p0, p1);
            }
            j0 += 8;
        }
        let inv0 = softmax_unnormalised(&mut s0[..n]);
        let inv1 = if pair {
            softmax_unnormalised(&mut s1[..n])
        } else {
            0.0
        };
        let vg = v.as_ptr().add(g * d);
        let o0 = orow.as_mut_ptr().add(h * d);
        let o1 = if pair {
            orow.as_mut_ptr().add((h + 1) * d)
        } else {
            o0
        };
        let mut c0 = 0;
        while c0 + 32 <= d {
            if pair {
                pv_tile::<4, 2>(
                    s0.as_ptr(),
                    s1.as_ptr(),
                    n,
                    vg.add(c0),
                    kvd,
                    inv0,
                    inv1,
                    o0.add(c0),
                    o1.add(c0),
                );
            } else {
                pv_tile::<4, 1>(
                    s0.as_ptr(),
                    s1.as_ptr(),
                    n,
                    vg.add(c0),
                    kvd,
                    inv0,
                    inv1,
                    o0.add(c0),
                    o1.add(c0),
                );
            }
            c0 += 32;
        }
        while c0 < d {
            if pair {
                pv_tile::<1, 2>(
                    s0.as_ptr(),
                    s1.as_ptr(),
                    n,
                    vg.add(c0),
                    kvd,
                    inv0,
                    inv1,
                    o0.add(c0),
                    o1.add(c0),
                );
            } else {
                pv_tile::<1, 1>(
                    s0.as_ptr(),
                    s1.as_ptr(),
                    n,
                    vg.add(c0),
                    kvd,
                    inv0,
                    inv1,
                    o0.add(c0),
                    o1.add(c0),
                );
            }
            c0 += 8;
        }
        h += if pair { 2 } else { 1 };
    }
}

/// Scores of positions j0..j0 + 8·P for HP query heads (q0, and q1 when HP = 2): s[j] = scale · Σ_d q[d]·kt[d][j].
///
/// # Safety
/// AVX2+FMA; kt holds D rows of stride max_t covering the positions; q0/q1 D floats; s0/s1 the positions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn qk_tile<const P: usize, const HP: usize>(
    q0: *const f32,
    q1: *const f32,
    kt: *const f32,
    max_t: usize,
    d: usize,
    j0: usize,
    scale: f32,
    s0: *mut f32,
    s1: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); P]; HP];
    for dd in 0..d {
        let row = kt.add(dd * max_t + j0);
        let mut kv = [_mm256_setzero_ps(); P];
        for (l, x) in kv.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(row.add(8 * l));
        }
        for (hh, a) in acc.iter_mut().enumerate() {
            let qv = _mm256_set1_ps(*(if hh == 0 { q0 } else { q1 }).add(dd));
            for l in 0..P {
                a[l] = _mm256_fmadd_ps(qv, kv[l], a[l]);
            }
        }
    }
    let sv = _mm256_set1_ps(scale);
    for (hh, a) in acc.iter().enumerate() {
        let dst = if hh == 0 { s0 } else { s1 }.add(j0);
        for (l, x) in a.iter().enumerate() {
            _mm256_storeu_ps(dst.add(8 * l), _mm256_mul_ps(*x, sv));
        }
    }
}

/// o[c] (c < 8·C) = inv · Σ_{j<n} s[j]·v[j·kvd + c] for HP heads (s0 → o0, s1 → o1 when HP = 2).
///
/// # Safety
/// AVX2+FMA; s0/s1 hold n floats; v holds n rows of stride kvd with 8·C floats each; o0/o1 8·C floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_tile<const C: usize, const HP: usize>(
    s0: *const f32,
    s1: *const f32,
    n: usize,
    v: *const f32,
    kvd: usize,
    inv0: f32,
    inv1: f32,
    o0: *mut f32,
    o1: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); C]; HP];
    for j in 0..n {
        let row = v.add(j * kvd);
        let mut vv = [_mm256_setzero_ps(); C];
        for (l, x) in vv.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(row.add(8 * l));
        }
        for (hh, a) in acc.iter_mut().enumerate() {
            let p = _mm256_set1_ps(*(if hh == 0 { s0 } else { s1 }).add(j));
            for l in 0..C {
                a[l] = _mm256_fmadd_ps(p, vv[l], a[l]);
            }
        }
    }
    for (hh, a) in acc.iter().enumerate() {
        let (dst, inv) = if hh == 0 { (o0, inv0) } else { (o1, inv1) };
        let iv = _mm256_set1_ps(inv);
        for (l, x) in a.iter().enumerate() {
            _mm256_storeu_ps(dst.add(8 * l), _mm256_mul_ps(*x, iv));
        }
    }
}

/// s = exp(s − max s) in place; returns 1 / Σ s (vectorised: the exponentials, then an 8-lane sum).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn softmax_unnormalised(s: &mut [f32]) -> f32 {
    let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in s.iter_mut() {
        *x = exp_f32(*x - mx);
    }
    let mut acc = [0.0f32; 8];
    let ch = s.chunks_exact(8);
    let rem = ch.remainder();
    for c in ch {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for x in rem {
        sum += x;
    }
    1.0 / sum
}

/// sc[j0..j0+W] = scale · Σ_d q[d]·kt[d][j0..j0+W] (inlined into the AVX2 copy of the caller).
#[inline(always)]
fn qk_block<const W: usize>(
    q: &[f32],
    kt: &[f32],
    max_t: usize,
    j0: usize,
    scale: f32,
    sc: &mut [f32],
) {
    let mut acc = [0.0f32; W];
    for (dd, &qv) in q.iter().enumerate() {
        let kr: &[f32; W] = kt[dd * max_t + j0..dd * max_t + j0 + W]
            .try_into()
            .expect("W columns");
        for l in 0..W {
            acc[l] += qv * kr[l];
        }
    }
    for (o, a) in sc[j0..j0 + W].iter_mut().zip(acc) {
        *o = a * scale;
    }
}

multiversion! {
    /// One query row against the cache of its slot: kt (KV, D, max_t), v (max_t, KV·D); positions 0..sc.len().
    fn attention_cached_row(q: &[f32], kt: &[f32], v: &[f32], max_t: usize, kvd: usize, group: usize, d: usize, scale: f32, sc: &mut [f32], orow: &mut [f32]) {
        let nh = q.len() / d;
        let n = sc.len();
        for h in 0..nh {
            let g = h / group;
            let qh = &q[h * d..(h + 1) * d];
            // scores, 32 (then 8) positions at a time: independent accumulators held in registers across the
            // D products (no horizontal sums, no dependency chain on one register)
            let kg = &kt[g * d * max_t..(g + 1) * d * max_t];
            let mut j0 = 0;
            while j0 + 32 <= n {
                qk_block::<32>(qh, kg, max_t, j0, scale, sc);
                j0 += 32;
            }
            while j0 + 8 <= n {
                qk_block::<8>(qh, kg, max_t, j0, scale, sc);
                j0 += 8;
            }
            for j in j0..n {
                let mut a = 0.0f32;
                for (dd, &qv) in qh.iter().enumerate() {
                    a += qv * kg[dd * max_t + j];
                }
                sc[j] = a * scale;
            }
            let mx = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for sj in sc.iter_mut() {
                *sj = exp_f32(*sj - mx);
                sum += *sj;
            }
            let inv = 1.0 / sum;
            // out = Σ_j p_j v_j, 32 columns at a time held in registers across the positions
            let o = &mut orow[h * d..(h + 1) * d];
            let full = d / 32 * 32;
            for c0 in (0..full).step_by(32) {
                let mut acc = [0.0f32; 32];
                for (j, &sj) in sc.iter().enumerate() {
                    let vr = &v[j * kvd + g * d + c0..j * kvd + g * d + c0 + 32];
                    for l in 0..32 {
                        acc[l] += sj * vr[l];
                    }
                }
                for l in 0..32 {
                    o[c0 + l] = acc[l] * inv;
                }
            }
            if full < d {
                let tail = &mut o[full..];
                tail.iter_mut().for_each(|x| *x = 0.0);
                for (j, &sj) in sc.iter().enumerate() {
                    let vr = j * kvd + g * d + full;
                    axpy(sj * inv, &v[vr..vr + d - full], tail);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SwiGLU: rows of gu are [gate (I) | up (I)]; h = silu(gate) · up.

/// gu: (N, 2I), h: (N, I).
pub fn swiglu_fwd(gu: &[f32], h: &mut [f32], inter: usize) {
    par_rows(h, inter, 16, |r0, blk| {
        for (i, hr) in blk.chunks_exact_mut(inter).enumerate() {
            swiglu_row(&gu[(r0 + i) * 2 * inter..(r0 + i + 1) * 2 * inter], hr);
        }
    });
}

/// dgu = ∂L/∂gu from dh: d gate = dh·up·σ(g)(1 + g(1 − σ(g))), d up = dh·silu(g). dh: (N, I), dgu: (N, 2I).
pub fn swiglu_bwd(dh: &[f32], gu: &[f32], dgu: &mut [f32], inter: usize) {
    par_rows(dgu, 2 * inter, 16, |r0, blk| {
        for (i, drow) in blk.chunks_exact_mut(2 * inter).enumerate() {
            let n = r0 + i;
            let row = &gu[n * 2 * inter..(n + 1) * 2 * inter];
            let (g, u) = row.split_at(inter);
            swiglu_bwd_row(&dh[n * inter..(n + 1) * inter], g, u, drow);
        }
    });
}

multiversion! {
    fn swiglu_row(row: &[f32], hr: &mut [f32]) {
        let (g, u) = row.split_at(hr.len());
        for j in 0..hr.len() {
            hr[j] = g[j] * sigmoid(g[j]) * u[j];
        }
    }
}

multiversion! {
    fn swiglu_bwd_row(dhr: &[f32], g: &[f32], u: &[f32], drow: &mut [f32]) {
        let (dg, du) = drow.split_at_mut(dhr.len());
        for j in 0..dhr.len() {
            let s = sigmoid(g[j]);
            let silu = g[j] * s;
            dg[j] = dhr[j] * u[j] * s * (1.0 + g[j] * (1.0 - s));
            du[j] = dhr[j] * silu;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Log-softmax rows.

/// log Σ_j exp(x_j), computed stably (f32 with f64-free max shift).
pub fn logsumexp(x: &[f32]) -> f32 {
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    mx + sum_exp_shifted(x, mx).ln()
}

multiversion! {
    /// Σ_j exp(x_j − m).
    fn sum_exp_shifted(x: &[f32], m: f32) -> f32 {
        let mut acc = [0.0f32; 8];
        let ch = x.chunks_exact(8);
        let rem = ch.remainder();
        for c in ch {
            for i in 0..8 {
                acc[i] += exp_f32(c[i] - m);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for &v in rem {
            s += exp_f32(v - m);
        }
        s
    }
}

multiversion! {
    /// Overwrites logits z with coef·(onehot(target) − softmax(z)), the gradient of coef·log softmax(z)[target].
    pub fn softmax_grad_row(z: &mut [f32], target: usize, coef: f32) {
        let mx = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for x in z.iter_mut() {
            *x = exp_f32(*x - mx);
            sum += *x;
        }
        let s = -coef / sum;
        for x in z.iter_mut() {
            *x *= s;
        }
        z[target] += coef;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Optimiser and reductions.

/// Σ x² in f64, threaded.
pub fn sum_squares(x: &[f32]) -> f64 {
    let chunk = 1 << 16;
    let n = x.len().div_ceil(chunk);
    let parts = std::sync::Mutex::new(vec![0.0f64; n]);
    parallel_for(n, |i| {
        let s = &x[i * chunk..((i + 1) * chunk).min(x.len())];
        let v: f64 = s
            .chunks(8)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
            .sum();
        parts.lock().unwrap_or_else(|e| e.into_inner())[i] = v;
    });
    let v = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    v.iter().sum()
}

/// x *= s, threaded.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    par_rows(x, 1, 1 << 15, |_, blk| blk.iter_mut().for_each(|v| *v *= s));
}

/// One AdamW update over a parameter range (decoupled weight decay `wd`, bias-corrected moments):
/// m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p −= lr·( (m/bc1) / (sqrt(v/bc2) + eps) + wd·p ).
/// `gscale` multiplies the gradient first (grad-norm clipping).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub gscale: f32,
}

pub fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep, wd: f32) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: length mismatch"
    );
    let chunk = 1 << 14;
    let tasks = n.div_ceil(chunk);
    let (ps, ms, vs) = (SharedMut::new(p), SharedMut::new(m), SharedMut::new(v));
    parallel_for(tasks, |t| {
        let a = t * chunk;
        let len = chunk.min(n - a);
        // SAFETY: task t owns the index range a..a+len of p, m and v.
        let (pp, mm, vv) = unsafe { (ps.slice(a, len), ms.slice(a, len), vs.slice(a, len)) };
        adamw_chunk(pp, &g[a..a + len], mm, vv, s, wd);
    });
}

multiversion! {
    fn adamw_chunk(pp: &mut [f32], gg: &[f32], mm: &mut [f32], vv: &mut [f32], s: AdamWStep, wd: f32) {
        let (ib1, ib2) = (1.0 / s.bc1, 1.0 / s.bc2);
        for i in 0..pp.len() {
            let gi = gg[i] * s.gscale;
            mm[i] = s.beta1 * mm[i] + (1.0 - s.beta1) * gi;
            vv[i] = s.beta2 * vv[i] + (1.0 - s.beta2) * gi * gi;
            let upd = (mm[i] * ib1) / ((vv[i] * ib2).sqrt() + s.eps) + wd * pp[i];
            pp[i] -= s.lr * upd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rng;

    /// `attention_cached` (the AVX2 tiles where they apply, else the portable loops) against a plain f64
    /// softmax-attention over the cache: head groups of 1, 2, 3 and 7 (pairs and a single head), head dims
    /// 8, 16, 24 and 64 (32- and 8-column tiles), positions not a multiple of 8 or 32, and a cache stride
    /// (max_t) that is not a multiple of 8 (the portable path).
    #[test]
    fn cached_attention_matches_a_reference() {
        let mut rng = Rng::new(21, 0);
        for &(nh, kv, d, max_t) in &[
            (4, 2, 16, 40),
            (2, 2, 8, 8),
            (6, 2, 64, 80),
            (14, 2, 64, 48),
            (3, 1, 24, 72),
            (4, 2, 16, 37),
        ] {
            let (hd, kvd, w) = (nh * d, kv * d, (nh + 2 * kv) * d);
            let slots = 2;
            let kt: Vec<f32> = (0..slots * kvd * max_t)
                .map(|_| rng.normal() as f32)
                .collect();
            let vc: Vec<f32> = (0..slots * max_t * kvd)
                .map(|_| rng.normal() as f32)
                .collect();
            let pos: Vec<usize> = [0, 5, 7, 8, 31, 32, 33, max_t - 1]
                .into_iter()
                .filter(|&p| p < max_t)
                .collect();
            let slot: Vec<usize> = (0..pos.len()).map(|i| i % slots).collect();
            let q: Vec<f32> = (0..pos.len() * w).map(|_| rng.normal() as f32).collect();
            let mut out = vec![f32::NAN; pos.len() * hd];
            attention_cached(&q, w, nh, kv, d, &slot, &pos, &kt, &vc, max_t, &mut out);
            let scale = 1.0 / (d as f64).sqrt();
            for (r, (&s, &p)) in slot.iter().zip(&pos).enumerate() {
                for h in 0..nh {
                    let g = h / (nh / kv);
                    let sc: Vec<f64> = (0..=p)
                        .map(|j| {
                            (0..d)
                                .map(|e| {
                                    q[r * w + h * d + e] as f64
                                        * kt[(s * kvd + g * d + e) * max_t + j] as f64
                                })
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let ex: Vec<f64> = sc.iter().map(|x| (x - mx).exp()).collect();
                    let sum: f64 = ex.iter().sum();
                    for e in 0..d {
                        let want: f64 = (0..=p)
                            .map(|j| ex[j] / sum * vc[(s * max_t + j) * kvd + g * d + e] as f64)
                            .sum();
                        let got = out[r * hd + h * d + e] as f64;
                        assert!((got - want).abs() < 2e-5, "nh {nh} kv {kv} d {d} max_t {max_t} row {r} head {h} col {e}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
