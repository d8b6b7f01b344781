//! Matrix products of the CPU backend: row-major `C = alpha·op(A)·op(B) + beta·C` (op = optional transpose).
//!
//! Three paths behind one function:
//! - `Blas`: OpenBLAS `cblas_sgemm` (loaded at run time, `blas.rs`), single-threaded per call;
//! - `Builtin`: the blocked, packed AVX2+FMA kernel of `gemm_avx2.rs` (runtime feature detection);
//! - `Scalar`: a plain loop nest, the fallback on CPUs without AVX2/FMA and the reference in tests.
//!
//! `sgemm` splits the rows of C over the backend threads (each thread runs the chosen single-thread path on its
//! row block), so OpenBLAS and our own fused kernels share one thread budget. The default path is `Blas` when
//! the library loads, else `Builtin` when the CPU has AVX2+FMA, else `Scalar`; `SPARK_GEMM=blas|builtin|scalar`
//! forces one (an unavailable choice falls back down the same order), `set_path` changes it at run time (tests,
//! benchmarks).

use super::blas::blas;
use super::threads::{num_threads, par_map, split_range, SharedMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    Blas,
    Builtin,
    Scalar,
}

impl GemmPath {
    pub fn name(self) -> &'static str {
        match self {
            GemmPath::Blas => "blas",
            GemmPath::Builtin => "builtin",
            GemmPath::Scalar => "scalar",
        }
    }
    pub fn parse(s: &str) -> Option<GemmPath> {
        match s.trim().to_ascii_lowercase().as_str() {
            "blas" | "openblas" => Some(GemmPath::Blas),
            "builtin" | "avx2" => Some(GemmPath::Builtin),
            "scalar" => Some(GemmPath::Scalar),
            _ => None,
        }
    }
    /// Whether this path can run on this machine.
    pub fn available(self) -> bool {
        match self {
            GemmPath::Blas => blas().is_some(),
            GemmPath::Builtin => super::gemm_avx2::available(),
            GemmPath::Scalar => true,
        }
    }
}

const UNSET: u8 = 255;
static PATH: AtomicU8 = AtomicU8::new(UNSET);

fn encode(p: GemmPath) -> u8 {
    p as u8
}
fn decode(v: u8) -> GemmPath {
    match v {
        0 => GemmPath::Blas,
        1 => GemmPath::Builtin,
        _ => GemmPath::Scalar,
    }
}

fn resolve(want: Option<GemmPath>) -> GemmPath {
    let order = [GemmPath::Blas, GemmPath::Builtin, GemmPath::Scalar];
    let start = match want {
        Some(GemmPath::Builtin) => 1,
        Some(GemmPath::Scalar) => 2,
        _ => 0,
    };
    order[start..].iter().copied().find(|p| p.available()).unwrap_or(GemmPath::Scalar)
}

/// The GEMM path in use (first call reads `SPARK_GEMM`).
pub fn path() -> GemmPath {
    let v = PATH.load(Ordering::Relaxed);
    if v != UNSET {
        return decode(v);
    }
    let want = std::env::var("SPARK_GEMM").ok().and_then(|s| GemmPath::parse(&s));
    let p = resolve(want);
    PATH.store(encode(p), Ordering::Relaxed);
    p
}

/// Selects the GEMM path for the whole process; returns the path actually used (an unavailable one falls back).
pub fn set_path(p: GemmPath) -> GemmPath {
    let r = resolve(Some(p));
    PATH.store(encode(r), Ordering::Relaxed);
    r
}

/// Panics unless every slice is long enough for the row-major GEMM it describes (op(A): m×k, op(B): k×n, C: m×n).
#[allow(clippy::too_many_arguments)]
pub fn check_dims(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alen: usize,
    lda: usize,
    blen: usize,
    ldb: usize,
    clen: usize,
    ldc: usize,
) {
    let need = |rows: usize, cols: usize, ld: usize| if rows == 0 || cols == 0 { 0 } else { (rows - 1) * ld + cols };
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    assert!(ac <= lda.max(1) || ar == 0, "sgemm: lda too small");
    assert!(bc <= ldb.max(1) || br == 0, "sgemm: ldb too small");
    assert!(n <= ldc.max(1) || m == 0, "sgemm: ldc too small");
    assert!(alen >= need(ar, ac, lda), "sgemm: A too short");
    assert!(blen >= need(br, bc, ldb), "sgemm: B too short");
    assert!(clen >= need(m, n, ldc), "sgemm: C too short");
}

/// Single-threaded GEMM on one path.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_st(
    p: GemmPath,
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
) {
    if m == 0 || n == 0 {
        return;
    }
    check_dims(ta, tb, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
    match p {
        GemmPath::Blas => match blas() {
            Some(bl) => bl.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
            None => sgemm_scalar(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
        },
        GemmPath::Builtin => {
            if !super::gemm_avx2::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
                sgemm_scalar(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            }
        }
        GemmPath::Scalar => sgemm_scalar(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
    }
}

/// Multi-threaded GEMM on the process's path: rows of C are split over the backend threads.
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
) {
    if !STATS_ON.load(Ordering::Relaxed) {
        return sgemm_on(path(), num_threads(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    let t0 = std::time::Instant::now();
    sgemm_on(path(), num_threads(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    STATS_NANOS.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    STATS_FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
}

static STATS_ON: AtomicBool = AtomicBool::new(false);
static STATS_NANOS: AtomicU64 = AtomicU64::new(0);
static STATS_FLOPS: AtomicU64 = AtomicU64::new(0);

/// Turns GEMM accounting on or off and resets it (benchmarks: GFLOP/s of the GEMMs inside a training step).
pub fn stats_enable(on: bool) {
    STATS_NANOS.store(0, Ordering::Relaxed);
    STATS_FLOPS.store(0, Ordering::Relaxed);
    STATS_ON.store(on, Ordering::Relaxed);
}

/// (flops, seconds) spent in `sgemm` since `stats_enable(true)`.
pub fn stats() -> (u64, f64) {
    (STATS_FLOPS.load(Ordering::Relaxed), STATS_NANOS.load(Ordering::Relaxed) as f64 * 1e-9)
}

/// `sgemm` on an explicit path and thread count.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_on(
    p: GemmPath,
    threads: usize,
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
) {
    if m == 0 || n == 0 {
        return;
    }
    check_dims(ta, tb, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    // Few rows (decode steps): split the columns instead, so each thread packs only its share of op(B) (the
    // weights); each part is computed into a private buffer and merged.
    if flops >= 5e5 && threads > 1 && m < 128 && n >= 32 * threads {
        let ranges = split_range(n, threads, 16);
        let part = |(j0, j1): (usize, usize)| -> Vec<f32> {
            let nj = j1 - j0;
            let bsub = if tb { &b[j0 * ldb..] } else { &b[j0..] };
            let mut tmp = vec![0.0f32; m * nj];
            sgemm_st(p, ta, tb, m, nj, k, alpha, a, lda, bsub, ldb, 0.0, &mut tmp, nj);
            tmp
        };
        let parts: Vec<Vec<f32>> = par_map(ranges.len(), |k| part(ranges[k]));
        for (&(j0, j1), tmp) in ranges.iter().zip(&parts) {
            let nj = j1 - j0;
            for i in 0..m {
                let dst = &mut c[i * ldc + j0..i * ldc + j1];
                let src = &tmp[i * nj..(i + 1) * nj];
                if beta == 0.0 {
                    dst.copy_from_slice(src);
                } else {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = beta * *d + s;
                    }
                }
            }
        }
        return;
    }
    // Below ~0.5 MFLOP a thread spawn costs more than it saves; rows are split in multiples of 8.
    let t = if flops < 5e5 { 1 } else { threads.min(m / 8).max(1) };
    if t <= 1 {
        sgemm_st(p, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    let ranges = split_range(m, t, 8);
    let last = ranges.len() - 1;
    let clen = c.len();
    let cs = SharedMut::new(c);
    par_map(ranges.len(), |idx| {
        let (r0, r1) = ranges[idx];
        let end = if idx == last { clen } else { r1 * ldc };
        // SAFETY: the row blocks [r0·ldc, r1·ldc) of C are disjoint.
        let cblk = unsafe { cs.slice(r0 * ldc, end - r0 * ldc) };
        let a_off = if ta { r0 } else { r0 * lda };
        sgemm_st(p, ta, tb, r1 - r0, n, k, alpha, &a[a_off..], lda, b, ldb, beta, cblk, ldc);
    });
}

/// The plain loop nest (reference and fallback). Accumulates each C row in f32, k outermost per row.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_scalar(
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
) {
    let mut bt = Vec::new();
    // op(B) row p as a contiguous slice: transpose B once when it is stored transposed.
    let (bmat, bld): (&[f32], usize) = if tb {
        bt.resize(k * n, 0.0);
        for j in 0..n {
            for p in 0..k {
                bt[p * n + j] = b[j * ldb + p];
            }
        }
        (&bt, n)
    } else {
        (b, ldb)
    };
    for i in 0..m {
        let crow = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            crow.iter_mut().for_each(|x| *x = 0.0);
        } else if beta != 1.0 {
            crow.iter_mut().for_each(|x| *x *= beta);
        }
        for p in 0..k {
            let aip = alpha * if ta { a[p * lda + i] } else { a[i * lda + p] };
            let brow = &bmat[p * bld..p * bld + n];
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += aip * bv;
            }
        }
    }
}
