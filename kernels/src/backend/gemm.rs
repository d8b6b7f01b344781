//! Matrix products of the CPU backend: row-major `C = alpha·op(A)·op(B) + beta·C` (op = optional transpose).
//!
//! One product is one `Gemm` value (sizes, scalars, the two operands as `Mat`s); C is passed beside it as
//! `(&mut [f32], ldc)`. A path is a `Kernel` — a single-threaded implementation of `Gemm` — and there are three:
//! - `Blas`: OpenBLAS `cblas_sgemm` (loaded at run time, `blas.rs`), single-threaded per call;
//! - `Builtin`: the blocked, packed AVX2+FMA kernel of `gemm_avx2.rs` (runtime feature detection);
//! - `Scalar`: a plain loop nest, the fallback on CPUs without AVX2/FMA and the reference in tests.
//!
//! `Gemm::run` splits the rows of C over the backend threads (each thread runs the chosen kernel on its row
//! block; decode-sized products split the columns instead), so OpenBLAS and our own fused kernels share one
//! thread budget; `Gemm::serial` runs on the calling thread (inside a parallel region). `sgemm` is the
//! BLAS-style entry the model's code calls. The default path is `Blas` when the library loads, else `Builtin`
//! when the CPU has AVX2+FMA, else `Scalar`; `SPARK_GEMM=blas|builtin|scalar` forces one (an unavailable
//! choice falls back down the same order), `set_path` changes it at run time (tests, benchmarks).

use super::blas::blas;
use super::gemm_avx2::BuiltinKernel;
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
    order[start..]
        .iter()
        .copied()
        .find(|p| p.available())
        .unwrap_or(GemmPath::Scalar)
}

/// The GEMM path in use (first call reads `SPARK_GEMM`).
pub fn path() -> GemmPath {
    let v = PATH.load(Ordering::Relaxed);
    if v != UNSET {
        return decode(v);
    }
    let want = std::env::var("SPARK_GEMM")
        .ok()
        .and_then(|s| GemmPath::parse(&s));
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

/// One operand of a product: a row-major matrix `data` with row stride `ld`, used as is or transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    /// op(X) = Xᵀ: the stored matrix's rows are op(X)'s columns.
    pub trans: bool,
}

impl<'a> Mat<'a> {
    /// The matrix as stored.
    pub fn n(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat {
            data,
            ld,
            trans: false,
        }
    }
    /// The transpose of the matrix as stored.
    pub fn t(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat {
            data,
            ld,
            trans: true,
        }
    }
    /// op(X)ᵀ.
    pub fn transposed(self) -> Mat<'a> {
        Mat {
            trans: !self.trans,
            ..self
        }
    }
    /// Element (r, c) of op(X).
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> f32 {
        if self.trans {
            self.data[c * self.ld + r]
        } else {
            self.data[r * self.ld + c]
        }
    }
    /// op(X) restricted to rows `r0..` (op(X) keeps its column count).
    fn rows_from(self, r0: usize) -> Mat<'a> {
        let off = if self.trans { r0 } else { r0 * self.ld };
        Mat {
            data: &self.data[off..],
            ..self
        }
    }
    /// op(X) restricted to columns `c0..`.
    fn cols_from(self, c0: usize) -> Mat<'a> {
        let off = if self.trans { c0 * self.ld } else { c0 };
        Mat {
            data: &self.data[off..],
            ..self
        }
    }
    /// Panics unless `data` holds an op(X) of `rows × cols` at stride `ld`.
    pub(crate) fn check(&self, rows: usize, cols: usize, what: &str) {
        let (sr, sc) = if self.trans {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if sr == 0 || sc == 0 {
            return;
        }
        assert!(sc <= self.ld, "sgemm: ld{what} too small");
        assert!(
            self.data.len() >= (sr - 1) * self.ld + sc,
            "sgemm: {what} too short"
        );
    }
}

/// One product C (m × n) = alpha·op(A)·op(B) + beta·C, op(A) m × k, op(B) k × n. beta = 0 never reads C.
#[derive(Clone, Copy)]
pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: Mat<'a>,
    pub b: Mat<'a>,
    pub beta: f32,
}

/// A GEMM path: computes one product on the calling thread; the dimensions are already checked (`Gemm::check`).
pub trait Kernel: Sync {
    fn sgemm(&self, g: &Gemm<'_>, c: &mut [f32], ldc: usize);
}

/// The kernel of path `p` (an unavailable path falls back to the scalar loops).
pub fn kernel(p: GemmPath) -> &'static dyn Kernel {
    match p {
        GemmPath::Blas => blas().map_or(&Scalar as &dyn Kernel, |b| b as &dyn Kernel),
        GemmPath::Builtin => {
            BuiltinKernel::get().map_or(&Scalar as &dyn Kernel, |b| b as &dyn Kernel)
        }
        GemmPath::Scalar => &Scalar,
    }
}

impl<'a> Gemm<'a> {
    /// Panics unless every slice is long enough for the product it describes (C: m × n at stride ldc).
    pub fn check(&self, c: &[f32], ldc: usize) {
        self.a.check(self.m, self.k, "A");
        self.b.check(self.k, self.n, "B");
        if self.m > 0 && self.n > 0 {
            assert!(self.n <= ldc, "sgemm: ldc too small");
            assert!(c.len() >= (self.m - 1) * ldc + self.n, "sgemm: C too short");
        }
    }

    /// Rows r0..r1 of C: op(A)'s rows r0..r1.
    fn rows(&self, r0: usize, r1: usize) -> Gemm<'a> {
        Gemm {
            m: r1 - r0,
            a: self.a.rows_from(r0),
            ..*self
        }
    }

    /// Columns j0..j1 of C: op(B)'s columns j0..j1.
    fn cols(&self, j0: usize, j1: usize) -> Gemm<'a> {
        Gemm {
            n: j1 - j0,
            b: self.b.cols_from(j0),
            ..*self
        }
    }

    /// On the calling thread with path `p` (e.g. inside a parallel region).
    pub fn serial(&self, p: GemmPath, c: &mut [f32], ldc: usize) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        self.check(c, ldc);
        kernel(p).sgemm(self, c, ldc);
    }

    /// On the process's path and all backend threads (accounted by `stats` when enabled).
    pub fn run(&self, c: &mut [f32], ldc: usize) {
        if !STATS_ON.load(Ordering::Relaxed) {
            return self.run_on(path(), num_threads(), c, ldc);
        }
        let t0 = std::time::Instant::now();
        self.run_on(path(), num_threads(), c, ldc);
        STATS_NANOS.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        STATS_FLOPS.fetch_add(2 * (self.m * self.n * self.k) as u64, Ordering::Relaxed);
    }

    /// On path `p` and `threads` threads.
    pub fn run_on(&self, p: GemmPath, threads: usize, c: &mut [f32], ldc: usize) {
        let (m, n) = (self.m, self.n);
        if m == 0 || n == 0 {
            return;
        }
        self.check(c, ldc);
        let kern = kernel(p);
        let flops = 2.0 * m as f64 * n as f64 * self.k as f64;
        // Few rows (decode steps): split the columns instead, so each thread packs only its share of op(B) (the
        // weights); each part is computed into a private buffer and merged.
        if flops >= 5e5 && threads > 1 && m < 128 && n >= 32 * threads {
            let ranges = split_range(n, threads, 16);
            let parts: Vec<Vec<f32>> = par_map(ranges.len(), |t| {
                let (j0, j1) = ranges[t];
                let mut tmp = vec![0.0f32; m * (j1 - j0)];
                kern.sgemm(
                    &Gemm {
                        beta: 0.0,
                        ..self.cols(j0, j1)
                    },
                    &mut tmp,
                    j1 - j0,
                );
                tmp
            });
            merge_cols(&ranges, &parts, self.beta, c, ldc, m);
            return;
        }
        // Below ~0.5 MFLOP a thread spawn costs more than it saves; rows are split in multiples of 8.
        let t = if flops < 5e5 {
            1
        } else {
            threads.min(m / 8).max(1)
        };
        if t <= 1 {
            kern.sgemm(self, c, ldc);
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
            kern.sgemm(&self.rows(r0, r1), cblk, ldc);
        });
    }
}

/// Writes column blocks computed separately into C (m rows at stride ldc): C[:, j0..j1] = part + beta·C.
/// `parts[t]` is the (m × (j1 − j0)) block of `ranges[t]`.
pub fn merge_cols(
    ranges: &[(usize, usize)],
    parts: &[Vec<f32>],
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    m: usize,
) {
    for (&(j0, j1), part) in ranges.iter().zip(parts) {
        let nj = j1 - j0;
        for i in 0..m {
            let dst = &mut c[i * ldc + j0..i * ldc + j1];
            let src = &part[i * nj..(i + 1) * nj];
            if beta == 0.0 {
                dst.copy_from_slice(src);
            } else {
                dst.iter_mut()
                    .zip(src)
                    .for_each(|(d, s)| *d = beta * *d + s);
            }
        }
    }
}

/// The BLAS-style entry: C = alpha·op(A)·op(B) + beta·C on the process's path and threads, with op(X) = Xᵀ
/// when `tx`; A, B, C row-major with row strides lda, ldb, ldc.
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
    let (a, b) = (
        Mat {
            data: a,
            ld: lda,
            trans: ta,
        },
        Mat {
            data: b,
            ld: ldb,
            trans: tb,
        },
    );
    Gemm {
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
    }
    .run(c, ldc);
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

/// (flops, seconds) spent in `Gemm::run` since `stats_enable(true)`.
pub fn stats() -> (u64, f64) {
    (
        STATS_FLOPS.load(Ordering::Relaxed),
        STATS_NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
    )
}

/// The plain loop nest (reference and fallback). Accumulates each C row in f32, k outermost per row.
pub struct Scalar;

impl Kernel for Scalar {
    fn sgemm(&self, g: &Gemm<'_>, c: &mut [f32], ldc: usize) {
        let (m, n, k) = (g.m, g.n, g.k);
        // op(B) row p as a contiguous slice: transpose B once when it is stored transposed.
        let bt: Vec<f32>;
        let (bmat, bld): (&[f32], usize) = if g.b.trans {
            bt = (0..k * n).map(|i| g.b.at(i / n, i % n)).collect();
            (&bt, n)
        } else {
            (g.b.data, g.b.ld)
        };
        for i in 0..m {
            let crow = &mut c[i * ldc..i * ldc + n];
            if g.beta == 0.0 {
                crow.iter_mut().for_each(|x| *x = 0.0);
            } else if g.beta != 1.0 {
                crow.iter_mut().for_each(|x| *x *= g.beta);
            }
            for p in 0..k {
                let aip = g.alpha * g.a.at(i, p);
                let brow = &bmat[p * bld..p * bld + n];
                for (cv, bv) in crow.iter_mut().zip(brow) {
                    *cv += aip * bv;
                }
            }
        }
    }
}
