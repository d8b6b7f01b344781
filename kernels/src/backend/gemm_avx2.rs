//! The built-in GEMM: a blocked, packed AVX2+FMA kernel (Goto/BLIS loop order) for CPUs without a CBLAS library.
//!
//! Loops: columns of C in blocks of NC → depth in blocks of KC (op(B) block packed into NR-wide panels) → rows
//! in blocks of MC (op(A) block packed into MR-tall panels) → a 6×16 register-tile microkernel (12 ymm
//! accumulators, 2 loads + 6 broadcasts + 12 FMAs per k). Packing absorbs the transposes, so the microkernel only
//! ever sees contiguous panels. Edge tiles are computed into a stack tile and copied. The packing buffers are
//! thread-local and reused across calls. Only the microkernel is `unsafe` (raw SIMD loads/stores, bounds
//! established by the driver).

use std::cell::RefCell;

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 96;
const NC: usize = 2048;

/// Whether this CPU runs the kernel (AVX2 and FMA, detected at run time).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Row-major C = alpha·op(A)·op(B) + beta·C; returns false (doing nothing) when the CPU lacks AVX2/FMA.
/// Dimensions must already be checked (`gemm::check_dims`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    if !available() {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return true;
    }
    BUFS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (ap, bp) = &mut *guard;
        let kc_max = KC.min(k);
        ap.resize(MC.div_ceil(MR) * MR * kc_max, 0.0);
        bp.resize(NC.min(n).div_ceil(NR) * NR * kc_max, 0.0);
        let mut jc = 0;
        while jc < n {
            let nc = NC.min(n - jc);
            let mut pc = 0;
            while pc < k {
                let kc = KC.min(k - pc);
                pack_b(tb, b, ldb, pc, kc, jc, nc, bp);
                let beta_eff = if pc == 0 { beta } else { 1.0 };
                run_block(ap, ta, a, lda, m, pc, kc, bp, jc, nc, alpha, beta_eff, c, ldc);
                pc += KC;
            }
            jc += NC;
        }
    });
    true
}

/// op(B) packed once into the kernel's panel layout (e.g. a weight matrix reused by every decode step):
/// for each depth block of KC rows, its NR-wide panels back to back.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs op(B) (k×n; `tb`: B is stored n×k with row stride ldb, else k×n).
    pub fn new(tb: bool, b: &[f32], ldb: usize, k: usize, n: usize) -> PackedB {
        super::gemm::check_dims(false, tb, 1, n, k, k, k.max(1), b.len(), ldb, n, n);
        let np = n.div_ceil(NR);
        let mut data = vec![0.0f32; np * NR * k];
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            let off = pc * np * NR;
            pack_b(tb, b, ldb, pc, kc, 0, n, &mut data[off..off + np * kc * NR]);
            pc += KC;
        }
        PackedB { k, n, data }
    }
}

/// C = alpha·op(A)·B + beta·C with B pre-packed; false (nothing done) without AVX2/FMA.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(ta: bool, m: usize, alpha: f32, a: &[f32], lda: usize, bp: &PackedB, beta: f32, c: &mut [f32], ldc: usize) -> bool {
    if !available() {
        return false;
    }
    let (n, k) = (bp.n, bp.k);
    super::gemm::check_dims(ta, false, m, n, k, a.len(), lda, bp.data.len().max(1), n.max(1), c.len(), ldc);
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return true;
    }
    let np = n.div_ceil(NR);
    BUFS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let ap = &mut guard.0;
        ap.resize(MC.div_ceil(MR) * MR * KC.min(k), 0.0);
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            let off = pc * np * NR;
            let beta_eff = if pc == 0 { beta } else { 1.0 };
            run_block(ap, ta, a, lda, m, pc, kc, &bp.data[off..off + np * kc * NR], 0, n, alpha, beta_eff, c, ldc);
            pc += KC;
        }
    });
    true
}

/// C (m × (col1 − col0)) = alpha·op(A)·B[:, col0..col1] with B pre-packed; col0 must be a multiple of the panel
/// width (`PANEL`). Threads computing disjoint column ranges share one packed B. false without AVX2/FMA.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed_cols(
    ta: bool,
    m: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    bp: &PackedB,
    col0: usize,
    col1: usize,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    if !available() {
        return false;
    }
    let (n, k) = (bp.n, bp.k);
    assert!(col0 % NR == 0 && col0 <= col1 && col1 <= n, "sgemm_packed_cols: bad column range");
    let nc = col1 - col0;
    super::gemm::check_dims(ta, false, m, nc, k, a.len(), lda, bp.data.len().max(1), n.max(1), c.len(), ldc);
    if m == 0 || nc == 0 || k == 0 {
        for i in 0..m {
            c[i * ldc..i * ldc + nc].iter_mut().for_each(|v| *v = 0.0);
        }
        return true;
    }
    let np = n.div_ceil(NR);
    let (p0, p1) = (col0 / NR, nc.div_ceil(NR) + col0 / NR);
    BUFS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let ap = &mut guard.0;
        ap.resize(MC.div_ceil(MR) * MR * KC.min(k), 0.0);
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            let off = pc * np * NR;
            let beta_eff = if pc == 0 { 0.0 } else { 1.0 };
            let blk = &bp.data[off + p0 * kc * NR..off + p1 * kc * NR];
            run_block(ap, ta, a, lda, m, pc, kc, blk, 0, nc, alpha, beta_eff, c, ldc);
            pc += KC;
        }
    });
    true
}

/// Width of a packed panel: column ranges of `sgemm_packed_cols` start at multiples of it.
pub const PANEL: usize = NR;

/// The inner loops for one packed depth block `bp` (columns jc..jc+nc of C, depth pc..pc+kc): rows in blocks
/// of MC (op(A) packed into `ap`), then NR-wide panels × MR-tall panels through the microkernel.
#[allow(clippy::too_many_arguments)]
fn run_block(
    ap: &mut [f32],
    ta: bool,
    a: &[f32],
    lda: usize,
    m: usize,
    pc: usize,
    kc: usize,
    bp: &[f32],
    jc: usize,
    nc: usize,
    alpha: f32,
    beta_eff: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let mut ic = 0;
    while ic < m {
        let mc = MC.min(m - ic);
        pack_a(ta, a, lda, ic, mc, pc, kc, ap);
        let mut jr = 0;
        while jr < nc {
            let nr = NR.min(nc - jr);
            let bpan = &bp[(jr / NR) * kc * NR..(jr / NR + 1) * kc * NR];
            let mut ir = 0;
            while ir < mc {
                let mr = MR.min(mc - ir);
                let apan = &ap[(ir / MR) * kc * MR..(ir / MR + 1) * kc * MR];
                let coff = (ic + ir) * ldc + jc + jr;
                if mr == MR && nr == NR {
                    let cblk = &mut c[coff..coff + (MR - 1) * ldc + NR];
                    // SAFETY: AVX2+FMA checked by `available()` (callers); the panels hold kc·MR and kc·NR
                    // floats and `cblk` covers the 6×16 tile at stride ldc (sliced above).
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        kernel_6x16(kc, apan.as_ptr(), bpan.as_ptr(), cblk.as_mut_ptr(), ldc, alpha, beta_eff)
                    };
                } else {
                    let mut tile = [0.0f32; MR * NR];
                    // SAFETY: as above, into a local 6×16 tile with stride NR.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        kernel_6x16(kc, apan.as_ptr(), bpan.as_ptr(), tile.as_mut_ptr(), NR, alpha, 0.0)
                    };
                    for r in 0..mr {
                        let crow = &mut c[coff + r * ldc..coff + r * ldc + nr];
                        for (j, cv) in crow.iter_mut().enumerate() {
                            let t = tile[r * NR + j];
                            *cv = if beta_eff == 0.0 { t } else { beta_eff * *cv + t };
                        }
                    }
                }
                ir += MR;
            }
            jr += NR;
        }
        ic += MC;
    }
}

/// Packs op(B)[pc..pc+kc, jc..jc+nc] into NR-wide panels: bp[(panel·kc + p)·NR + j], zero-padded.
#[allow(clippy::too_many_arguments)]
fn pack_b(tb: bool, b: &[f32], ldb: usize, pc: usize, kc: usize, jc: usize, nc: usize, bp: &mut [f32]) {
    let panels = nc.div_ceil(NR);
    for jp in 0..panels {
        let j0 = jc + jp * NR;
        let nr = NR.min(jc + nc - j0);
        let dst = &mut bp[jp * kc * NR..(jp + 1) * kc * NR];
        if !tb {
            for p in 0..kc {
                let src = &b[(pc + p) * ldb + j0..(pc + p) * ldb + j0 + nr];
                let d = &mut dst[p * NR..p * NR + NR];
                d[..nr].copy_from_slice(src);
                d[nr..].iter_mut().for_each(|x| *x = 0.0);
            }
        } else {
            for jj in 0..NR {
                if jj < nr {
                    let src = &b[(j0 + jj) * ldb + pc..(j0 + jj) * ldb + pc + kc];
                    for (p, &v) in src.iter().enumerate() {
                        dst[p * NR + jj] = v;
                    }
                } else {
                    for p in 0..kc {
                        dst[p * NR + jj] = 0.0;
                    }
                }
            }
        }
    }
}

/// Packs op(A)[ic..ic+mc, pc..pc+kc] into MR-tall panels: ap[(panel·kc + p)·MR + i], zero-padded.
#[allow(clippy::too_many_arguments)]
fn pack_a(ta: bool, a: &[f32], lda: usize, ic: usize, mc: usize, pc: usize, kc: usize, ap: &mut [f32]) {
    let panels = mc.div_ceil(MR);
    for ip in 0..panels {
        let i0 = ic + ip * MR;
        let mr = MR.min(ic + mc - i0);
        let dst = &mut ap[ip * kc * MR..(ip + 1) * kc * MR];
        if ta {
            for p in 0..kc {
                let src = &a[(pc + p) * lda + i0..(pc + p) * lda + i0 + mr];
                let d = &mut dst[p * MR..p * MR + MR];
                d[..mr].copy_from_slice(src);
                d[mr..].iter_mut().for_each(|x| *x = 0.0);
            }
        } else {
            for ii in 0..MR {
                if ii < mr {
                    let src = &a[(i0 + ii) * lda + pc..(i0 + ii) * lda + pc + kc];
                    for (p, &v) in src.iter().enumerate() {
                        dst[p * MR + ii] = v;
                    }
                } else {
                    for p in 0..kc {
                        dst[p * MR + ii] = 0.0;
                    }
                }
            }
        }
    }
}

/// The 6×16 microkernel: C[0..6, 0..16] (stride ldc) = alpha·Apanel·Bpanel + beta·C (beta = 0: C not read).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must hold kc·6 floats, `b` kc·16, and `c` a 6×16 tile at stride ldc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, alpha: f32, beta: f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let mut ap = a;
    let mut bptr = b;
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(bptr);
        let b1 = _mm256_loadu_ps(bptr.add(8));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_ps(*ap.add(r));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
        ap = ap.add(MR);
        bptr = bptr.add(NR);
    }
    let al = _mm256_set1_ps(alpha);
    if beta == 0.0 {
        for (r, row) in acc.iter().enumerate() {
            let p = c.add(r * ldc);
            _mm256_storeu_ps(p, _mm256_mul_ps(al, row[0]));
            _mm256_storeu_ps(p.add(8), _mm256_mul_ps(al, row[1]));
        }
    } else {
        let be = _mm256_set1_ps(beta);
        for (r, row) in acc.iter().enumerate() {
            let p = c.add(r * ldc);
            _mm256_storeu_ps(p, _mm256_fmadd_ps(al, row[0], _mm256_mul_ps(be, _mm256_loadu_ps(p))));
            _mm256_storeu_ps(p.add(8), _mm256_fmadd_ps(al, row[1], _mm256_mul_ps(be, _mm256_loadu_ps(p.add(8)))));
        }
    }
}
