//! The built-in GEMM: a blocked, packed AVX2+FMA kernel (Goto/BLIS loop order) for CPUs without a CBLAS library.
//!
//! Loops: columns of C in blocks of NC → depth in blocks of KC (op(B) block packed into NR-wide panels) → rows
//! in blocks of MC (op(A) block packed into MR-tall panels) → a register-tile microkernel: 6×16 on AVX2 (12 ymm
//! accumulators, 2 loads + 6 broadcasts + 12 FMAs per k), 16×16 on AVX-512 (16 zmm accumulators, 1 load + 16
//! broadcasts + 16 FMAs per k). Both keep B's 16-wide panels (so one `PackedB` serves either) and accumulate
//! every element of C over k in the same order with the same fused multiply-adds, so the two give bit-identical
//! results: the AVX-512 kernel is a speed-up, never a change of numbers. Packing absorbs the transposes, so the
//! microkernel only ever sees contiguous panels. Edge tiles are computed into a stack tile and copied. The
//! packing buffers are thread-local and reused across calls. Only the microkernels are `unsafe` (raw SIMD
//! loads/stores, bounds established by the driver).

use super::gemm::{Gemm, Kernel, Mat};
use std::cell::RefCell;

const NR: usize = 16;
const KC: usize = 256;
const NC: usize = 2048;
/// Rows of the AVX2 microkernel's tile, and of the AVX-512 one's.
const MR_AVX2: usize = 6;
const MR_AVX512: usize = 16;
/// Rows of op(A) packed per block: a multiple of both tiles' heights (≤ 96 · 256 floats, within a core's L2).
const MC: usize = 96;
/// Tallest tile (sizes the A buffer and the edge tile).
const MR_MAX: usize = MR_AVX512;

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

/// The microkernel in use: the 16×16 AVX-512 one when the CPU has AVX-512F (and it is not turned off by
/// `SPARK_GEMM_ISA=avx2` or `set_isa`), else the 6×16 AVX2 one. Both give the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx2,
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| available() && is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

const ISA_UNSET: u8 = 0;
static ISA: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(ISA_UNSET);

fn resolve_isa(want: Option<Isa>) -> Isa {
    match want {
        Some(Isa::Avx2) => Isa::Avx2,
        _ if avx512_available() => Isa::Avx512,
        _ => Isa::Avx2,
    }
}

/// The microkernel the built-in GEMM uses (the first call reads `SPARK_GEMM_ISA`: `avx2` or `avx512`).
pub fn isa() -> Isa {
    use std::sync::atomic::Ordering;
    match ISA.load(Ordering::Relaxed) {
        1 => Isa::Avx2,
        2 => Isa::Avx512,
        _ => {
            let want = match std::env::var("SPARK_GEMM_ISA").as_deref() {
                Ok("avx2") => Some(Isa::Avx2),
                _ => None,
            };
            set_isa(resolve_isa(want))
        }
    }
}

/// Selects the microkernel for the whole process (benchmarks and tests compare the two); returns the one
/// actually used (AVX-512 falls back to AVX2 on CPUs without it).
pub fn set_isa(want: Isa) -> Isa {
    let r = resolve_isa(Some(want));
    let code = match r {
        Isa::Avx2 => 1,
        Isa::Avx512 => 2,
    };
    ISA.store(code, std::sync::atomic::Ordering::Relaxed);
    r
}

thread_local! {
    static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The built-in kernel as a GEMM path; exists only on CPUs with AVX2 and FMA (`get`).
pub struct BuiltinKernel(());

impl BuiltinKernel {
    pub fn get() -> Option<&'static BuiltinKernel> {
        static K: BuiltinKernel = BuiltinKernel(());
        available().then_some(&K)
    }
}

/// C rows m, columns n, scaled by beta (beta = 0: overwritten with 0, C not read) — the product when k = 0.
fn scale_c(m: usize, n: usize, beta: f32, c: &mut [f32], ldc: usize) {
    for i in 0..m {
        for v in &mut c[i * ldc..i * ldc + n] {
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
    }
}

impl Kernel for BuiltinKernel {
    /// Row-major C = alpha·op(A)·op(B) + beta·C (slice lengths checked here: the microkernel uses raw pointers).
    fn sgemm(&self, g: &Gemm<'_>, c: &mut [f32], ldc: usize) {
        let (m, n, k) = (g.m, g.n, g.k);
        if m == 0 || n == 0 {
            return;
        }
        g.check(c, ldc);
        if k == 0 {
            return scale_c(m, n, g.beta, c, ldc);
        }
        BUFS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (ap, bp) = &mut *guard;
            let kc_max = KC.min(k);
            ap.resize(MC * kc_max, 0.0);
            bp.resize(NC.min(n).div_ceil(NR) * NR * kc_max, 0.0);
            let mut jc = 0;
            while jc < n {
                let nc = NC.min(n - jc);
                let mut pc = 0;
                while pc < k {
                    let kc = KC.min(k - pc);
                    pack::<NR>(g.b, pc, kc, jc, nc, bp);
                    let beta = if pc == 0 { g.beta } else { 1.0 };
                    let blk = Block {
                        a: g.a,
                        m,
                        alpha: g.alpha,
                        pc,
                        kc,
                        bp,
                        jc,
                        nc,
                        beta,
                    };
                    run_block(ap, &blk, c, ldc);
                    pc += KC;
                }
                jc += NC;
            }
        });
    }
}

/// op(B) packed once into the kernel's panel layout (e.g. a weight matrix reused by every decode step):
/// for each depth block of KC rows, its NR-wide panels back to back.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs op(B) (k × n).
    pub fn new(b: Mat<'_>, k: usize, n: usize) -> PackedB {
        b.check(k, n, "B");
        let np = n.div_ceil(NR);
        let mut data = vec![0.0f32; np * NR * k];
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            let off = pc * np * NR;
            pack::<NR>(b, pc, kc, 0, n, &mut data[off..off + np * kc * NR]);
            pc += KC;
        }
        PackedB { k, n, data }
    }

    /// C (m × (cols.end − cols.start), stride ldc) = alpha·op(A)·B[:, cols] + beta·C, with op(A) m × k;
    /// `cols.start` must be a multiple of the panel width (`PANEL`), so threads computing disjoint column
    /// ranges share one packed B. false (nothing done) without AVX2/FMA.
    #[allow(clippy::too_many_arguments)]
    pub fn mul(
        &self,
        a: Mat<'_>,
        m: usize,
        alpha: f32,
        cols: std::ops::Range<usize>,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) -> bool {
        if !available() {
            return false;
        }
        let (n, k) = (self.n, self.k);
        assert!(
            cols.start.is_multiple_of(NR) && cols.start <= cols.end && cols.end <= n,
            "PackedB::mul: bad column range"
        );
        let nc = cols.end - cols.start;
        a.check(m, k, "A");
        if m > 0 && nc > 0 {
            assert!(
                nc <= ldc && c.len() >= (m - 1) * ldc + nc,
                "PackedB::mul: C too short"
            );
        }
        if m == 0 || nc == 0 {
            return true;
        }
        if k == 0 {
            scale_c(m, nc, beta, c, ldc);
            return true;
        }
        let np = n.div_ceil(NR);
        let (p0, p1) = (cols.start / NR, cols.start / NR + nc.div_ceil(NR));
        BUFS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let ap = &mut guard.0;
            ap.resize(MC * KC.min(k), 0.0);
            let mut pc = 0;
            while pc < k {
                let kc = KC.min(k - pc);
                let off = pc * np * NR;
                let beta_eff = if pc == 0 { beta } else { 1.0 };
                let blk = &self.data[off + p0 * kc * NR..off + p1 * kc * NR];
                let blk = Block {
                    a,
                    m,
                    alpha,
                    pc,
                    kc,
                    bp: blk,
                    jc: 0,
                    nc,
                    beta: beta_eff,
                };
                run_block(ap, &blk, c, ldc);
                pc += KC;
            }
        });
        true
    }
}

/// Width of a packed panel: column ranges of `PackedB::mul` start at multiples of it.
pub const PANEL: usize = NR;

/// A microkernel: C[0..MR, 0..16] (stride ldc) = alpha·Apanel·Bpanel + beta·C (beta = 0: C not read).
type Micro = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32);

/// One packed depth block of a product: columns jc..jc+nc of C, depth pc..pc+kc of op(A) (m × k), op(B)'s
/// block packed in `bp`; C = alpha·op(A)·B + beta·C over that block.
struct Block<'a> {
    a: Mat<'a>,
    m: usize,
    alpha: f32,
    pc: usize,
    kc: usize,
    bp: &'a [f32],
    jc: usize,
    nc: usize,
    beta: f32,
}

/// The inner loops for one packed depth block, with the microkernel of `isa()`.
fn run_block(ap: &mut [f32], blk: &Block<'_>, c: &mut [f32], ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        Isa::Avx512 => run_block_with::<MR_AVX512>(kernel_16x16, ap, blk, c, ldc),
        Isa::Avx2 => run_block_with::<MR_AVX2>(kernel_6x16, ap, blk, c, ldc),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the built-in kernel runs only where `available()`");
}

/// `run_block` with an MR-tall microkernel: rows in blocks of MC (op(A) packed into `ap`), then NR-wide panels ×
/// MR-tall panels through `kern`.
fn run_block_with<const MR: usize>(
    kern: Micro,
    ap: &mut [f32],
    blk: &Block<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let Block {
        a,
        m,
        alpha,
        pc,
        kc,
        bp,
        jc,
        nc,
        beta: beta_eff,
    } = *blk;
    const { assert!(MC.is_multiple_of(MR) && MR <= MR_MAX) };
    let mut ic = 0;
    while ic < m {
        let mc = MC.min(m - ic);
        pack::<MR>(a.transposed(), pc, kc, ic, mc, ap);

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
                    // SAFETY: `kern` is the microkernel of `isa()`, whose instructions `available()` /
                    // `avx512_available()` checked; the panels hold kc·MR and kc·NR floats and `cblk` covers the
                    // MR×16 tile at stride ldc (sliced above).
                    unsafe {
                        kern(
                            kc,
                            apan.as_ptr(),
                            bpan.as_ptr(),
                            cblk.as_mut_ptr(),
                            ldc,
                            alpha,
                            beta_eff,
                        )
                    };
                } else {
                    let mut tile = [0.0f32; MR_MAX * NR];
                    // SAFETY: as above, into a local MR×16 tile with stride NR.
                    unsafe {
                        kern(
                            kc,
                            apan.as_ptr(),
                            bpan.as_ptr(),
                            tile.as_mut_ptr(),
                            NR,
                            1.0,
                            0.0,
                        )
                    };
                    // the full tile's rounding, alpha·sum + (beta·c) in one fused step, so that an element's
                    // value does not depend on which tile (or which kernel's tile height) it fell in
                    for r in 0..mr {
                        let crow = &mut c[coff + r * ldc..coff + r * ldc + nr];
                        for (j, cv) in crow.iter_mut().enumerate() {
                            let t = tile[r * NR + j];
                            *cv = if beta_eff == 0.0 {
                                alpha * t
                            } else {
                                alpha.mul_add(t, beta_eff * *cv)
                            };
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

/// Packs op(x)[depth0..depth0+kc, w0..w0+wn] into W-wide panels, zero-padded past the last column:
/// dst[(panel·kc + p)·W + j] = op(x)(depth0 + p, w0 + panel·W + j). op(B) (k × n) packs as is into NR-wide
/// panels; op(A) (m × k) packs as op(A)ᵀ into MR-tall panels.
fn pack<const W: usize>(
    x: Mat<'_>,
    depth0: usize,
    kc: usize,
    w0: usize,
    wn: usize,
    dst: &mut [f32],
) {
    for panel in 0..wn.div_ceil(W) {
        let j0 = w0 + panel * W;
        let nw = W.min(w0 + wn - j0);
        let d = &mut dst[panel * kc * W..(panel + 1) * kc * W];
        if !x.trans {
            // op(x)(depth, w) = data[depth·ld + w]: a depth row holds the panel's W values contiguously
            for p in 0..kc {
                let src = &x.data[(depth0 + p) * x.ld + j0..][..nw];
                let row = &mut d[p * W..(p + 1) * W];
                row[..nw].copy_from_slice(src);
                row[nw..].iter_mut().for_each(|v| *v = 0.0);
            }
        } else {
            // op(x)(depth, w) = data[w·ld + depth]: a column holds its kc depth values contiguously
            for j in 0..W {
                if j < nw {
                    let src = &x.data[(j0 + j) * x.ld + depth0..][..kc];
                    for (p, &v) in src.iter().enumerate() {
                        d[p * W + j] = v;
                    }
                } else {
                    (0..kc).for_each(|p| d[p * W + j] = 0.0);
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
unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    use std::arch::x86_64::*;
    const MR: usize = MR_AVX2;
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
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(al, row[0], _mm256_mul_ps(be, _mm256_loadu_ps(p))),
            );
            _mm256_storeu_ps(
                p.add(8),
                _mm256_fmadd_ps(al, row[1], _mm256_mul_ps(be, _mm256_loadu_ps(p.add(8)))),
            );
        }
    }
}

/// The 16×16 AVX-512 microkernel: C[0..16, 0..16] (stride ldc) = alpha·Apanel·Bpanel + beta·C (beta = 0: C not
/// read). Each element's sum over k is the AVX2 kernel's, term for term (the same FMAs in the same order).
///
/// # Safety
/// The CPU must support AVX-512F; `a` must hold kc·16 floats, `b` kc·16, and `c` a 16×16 tile at stride ldc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_16x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    use std::arch::x86_64::*;
    const MR: usize = MR_AVX512;
    let mut acc = [_mm512_setzero_ps(); MR];
    let mut ap = a;
    let mut bptr = b;
    for _ in 0..kc {
        let bv = _mm512_loadu_ps(bptr);
        for (r, row) in acc.iter_mut().enumerate() {
            *row = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(r)), bv, *row);
        }
        ap = ap.add(MR);
        bptr = bptr.add(NR);
    }
    let al = _mm512_set1_ps(alpha);
    if beta == 0.0 {
        for (r, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), _mm512_mul_ps(al, *row));
        }
    } else {
        let be = _mm512_set1_ps(beta);
        for (r, row) in acc.iter().enumerate() {
            let p = c.add(r * ldc);
            _mm512_storeu_ps(
                p,
                _mm512_fmadd_ps(al, *row, _mm512_mul_ps(be, _mm512_loadu_ps(p))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gemm::Kernel;
    use crate::model::params::Rng;

    fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Runs `f` with the built-in kernel's ISA set to `isa`, then restores the process's choice (one test
    /// at a time: the choice is process-wide).
    fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let prev = super::isa();
        set_isa(isa);
        let r = f();
        set_isa(prev);
        r
    }

    #[test]
    fn avx512_tile_gives_the_avx2_tile_s_numbers_bit_for_bit() {
        if !avx512_available() {
            eprintln!("skipped: this CPU has no AVX-512F (the AVX2 kernel is the only one)");
            return;
        }
        let k_ = BuiltinKernel::get().expect("AVX-512F implies AVX2+FMA here");
        let mut rng = Rng::new(9, 0);
        // tiles of either height with edges in both directions, a row count past MC, depth past KC
        let shapes = [
            (1, 1, 1),
            (16, 16, 8),
            (17, 33, 5),
            (64, 512, 256),
            (130, 70, 300),
            (97, 129, 513),
        ];
        for &(m, n, k) in &shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    let (lda, ldb, ldc) = (
                        if ta { m + 1 } else { k + 3 },
                        if tb { k + 2 } else { n + 1 },
                        n + 7,
                    );
                    let a = rand(&mut rng, if ta { k * lda } else { m * lda });
                    let b = rand(&mut rng, if tb { n * ldb } else { k * ldb });
                    let c0 = rand(&mut rng, m * ldc);
                    for &(alpha, beta) in &[(1.0f32, 0.0f32), (-0.75, 1.0), (2.0, 0.5)] {
                        let g = Gemm {
                            m,
                            n,
                            k,
                            alpha,
                            a: Mat {
                                data: &a,
                                ld: lda,
                                trans: ta,
                            },
                            b: Mat {
                                data: &b,
                                ld: ldb,
                                trans: tb,
                            },
                            beta,
                        };
                        let run = |isa| {
                            with_isa(isa, || {
                                let mut c = c0.clone();
                                k_.sgemm(&g, &mut c, ldc);
                                c
                            })
                        };
                        let (c2, c5) = (run(Isa::Avx2), run(Isa::Avx512));
                        assert!(
                            c2.iter().zip(&c5).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{m}×{n}×{k} ta={ta} tb={tb} alpha={alpha} beta={beta}: the tiles differ"
                        );
                        assert!(
                            c2.iter().zip(&c0).any(|(x, y)| x != y),
                            "nothing was computed"
                        );
                    }
                }
            }
            // the packed-weights path (sampling), on a column range starting at a panel boundary
            let w = rand(&mut rng, n * k);
            let pb = PackedB::new(Mat::t(&w, k), k, n);
            let x = rand(&mut rng, m * k);
            let j0 = (n / 2) / PANEL * PANEL;
            let run = |isa| {
                with_isa(isa, || {
                    let mut c = vec![1.0f32; m * (n - j0)];
                    assert!(pb.mul(Mat::n(&x, k), m, 1.0, j0..n, 0.5, &mut c, n - j0));
                    c
                })
            };
            let (c2, c5) = (run(Isa::Avx2), run(Isa::Avx512));
            assert!(
                c2.iter().zip(&c5).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}×{n}×{k}: packed tiles differ"
            );
        }
    }

    #[test]
    fn avx2_can_be_chosen_and_avx512_falls_back_without_the_cpu_feature() {
        assert_eq!(with_isa(Isa::Avx2, isa), Isa::Avx2);
        let want = if avx512_available() {
            Isa::Avx512
        } else {
            Isa::Avx2
        };
        assert_eq!(with_isa(Isa::Avx512, isa), want);
    }
}
