//! Skinny products for small-batch decode: `out (m × n) = x (m × k) · Wᵀ + beta·out` with W (n × k) row-major
//! (a weight matrix as the model stores it) and few rows m (≤ `MAX_ROWS`).
//!
//! With few rows a product is bound by reading W, not by arithmetic, so W is streamed once, as stored: no
//! packing, no copy. Each task takes a block of W's rows (output columns), and for every 3 of them and every 4
//! rows of x keeps 12 eight-lane accumulators over k (AVX2/FMA; 3 weight loads and 4 x loads per 12 FMAs), then
//! sums each accumulator's lanes. The tasks (several per thread, claimed dynamically) write disjoint column
//! blocks of `out` directly.
//!
//! Every output element is computed by the same sequence of operations whatever m, the column split or the
//! thread count (lane j of its accumulator sums x[p]·w[p] for p ≡ j mod 8 in order, then the lanes are added
//! in a fixed order and the k mod 8 tail last), so a row's result does not depend on the other rows of the
//! product. It differs from the blocked GEMM's only by rounding.

use super::threads::{num_threads, par_map};

/// Most rows of x for which `skinny` is the right product (above it the packed GEMM reuses each weight panel
/// across enough rows to be compute-bound).
pub const MAX_ROWS: usize = 8;

/// Rows of x and of W per register tile.
const RX: usize = 4;
const RW: usize = 3;
/// Fewest multiply-adds worth a parallel region (≈ the cost of waking the pool).
const PAR_MIN_MACS: usize = 1 << 17;
/// Column tasks per thread (dynamic load balance on a shared machine).
const TASKS_PER_THREAD: usize = 4;

/// out (m × n, row-major) = x (m × k) · Wᵀ + beta·out, W (n × k) row-major; beta = 0 never reads out.
/// Any m works (the kernel is meant for m ≤ `MAX_ROWS`); columns are split over the backend threads.
#[allow(clippy::too_many_arguments)]
pub fn skinny(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], beta: f32, out: &mut [f32]) {
    skinny_on(num_threads(), m, n, k, x, w, beta, out)
}

/// The output pointer shared by the column tasks of one product.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the tasks holding it write disjoint column blocks (see `skinny_on`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    /// The pointer (a method, so closures capture the Sync wrapper rather than its raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `skinny` with `threads` threads (tests vary it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn skinny_on(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &[f32],
    beta: f32,
    out: &mut [f32],
) {
    assert!(x.len() >= m * k, "skinny: x too short");
    assert!(w.len() >= n * k, "skinny: W too short");
    assert!(out.len() >= m * n, "skinny: out too short");
    if m == 0 || n == 0 {
        return;
    }
    let tasks = if threads > 1 && m * n * k >= PAR_MIN_MACS {
        (threads * TASKS_PER_THREAD).min(n.div_ceil(RW * 4))
    } else {
        1
    };
    if tasks <= 1 {
        // SAFETY: out holds the m × n block (checked above).
        return unsafe { columns(m, n, k, x, w, beta, out.as_mut_ptr(), 0, n) };
    }
    let ranges = super::threads::split_range(n, tasks, RW * 4);
    let base = OutPtr(out.as_mut_ptr());
    par_map(ranges.len(), |t| {
        let (j0, j1) = ranges[t];
        // SAFETY: task t writes only columns j0..j1 of each row, disjoint from every other task's; `out`
        // (m × n) is in bounds (checked above) and borrowed mutably for the whole region.
        unsafe { columns(m, n, k, x, w, beta, base.get(), j0, j1) };
    });
}

/// Columns j0..j1 of out (row stride n, through a raw pointer so that tasks share it).
///
/// # Safety
/// x holds m·k floats and w n·k (checked by the caller); `out` points to an m × n block that nothing else
/// reads or writes in columns j0..j1 (≤ n) during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn columns(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &[f32],
    beta: f32,
    out: *mut f32,
    j0: usize,
    j1: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm_avx2::available() {
        // SAFETY: AVX2+FMA present; the buffers as this function requires.
        return columns_avx2(m, n, k, x, w, beta, out, j0, j1);
    }
    let mut j = j0;
    while j < j1 {
        let nw = RW.min(j1 - j);
        let mut r = 0;
        while r < m {
            let nx = RX.min(m - r);
            for a in 0..nx {
                for b in 0..nw {
                    let s = dot8(
                        &x[(r + a) * k..(r + a + 1) * k],
                        &w[(j + b) * k..(j + b + 1) * k],
                    );
                    store(out.add((r + a) * n + j + b), s, beta);
                }
            }
            r += nx;
        }
        j += nw;
    }
}

/// out = s + beta·out (beta = 0: out not read).
///
/// # Safety
/// `o` is valid for reads and writes.
#[inline(always)]
unsafe fn store(o: *mut f32, s: f32, beta: f32) {
    *o = if beta == 0.0 { s } else { s + beta * *o };
}

/// The portable dot product with the AVX2 kernel's order: eight lane sums, added pairwise, then the tail.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len();
    let k8 = k / 8 * 8;
    let mut acc = [0.0f32; 8];
    for p in (0..k8).step_by(8) {
        for l in 0..8 {
            acc[l] += a[p + l] * b[p + l];
        }
    }
    let mut s = lanes_sum(acc);
    for p in k8..k {
        s += a[p] * b[p];
    }
    s
}

/// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): the order of the AVX2 horizontal sum below.
#[inline(always)]
fn lanes_sum(l: [f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// `columns` with the AVX2 tiles.
///
/// # Safety
/// AVX2+FMA, and the buffers as `columns` requires.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn columns_avx2(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &[f32],
    beta: f32,
    out: *mut f32,
    j0: usize,
    j1: usize,
) {
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut j = j0;
    while j < j1 {
        let nw = RW.min(j1 - j);
        let mut r = 0;
        while r < m {
            let nx = RX.min(m - r);
            let (xr, wj, o) = (xp.add(r * k), wp.add(j * k), out.add(r * n + j));
            match (nx, nw) {
                (4, 3) => tile::<4, 3>(xr, wj, k, o, n, beta),
                (4, 2) => tile::<4, 2>(xr, wj, k, o, n, beta),
                (4, 1) => tile::<4, 1>(xr, wj, k, o, n, beta),
                (3, 3) => tile::<3, 3>(xr, wj, k, o, n, beta),
                (3, 2) => tile::<3, 2>(xr, wj, k, o, n, beta),
                (3, 1) => tile::<3, 1>(xr, wj, k, o, n, beta),
                (2, 3) => tile::<2, 3>(xr, wj, k, o, n, beta),
                (2, 2) => tile::<2, 2>(xr, wj, k, o, n, beta),
                (2, 1) => tile::<2, 1>(xr, wj, k, o, n, beta),
                (1, 3) => tile::<1, 3>(xr, wj, k, o, n, beta),
                (1, 2) => tile::<1, 2>(xr, wj, k, o, n, beta),
                _ => tile::<1, 1>(xr, wj, k, o, n, beta),
            }
            r += nx;
        }
        j += nw;
    }
}

/// One register tile: out[a·ldo + b] (= or +=, see `store`) Σ_p x[a·k + p]·w[b·k + p] for a < A, b < B.
///
/// # Safety
/// AVX2+FMA; x holds A rows of k floats, w B rows of k floats, out an A × B block at row stride ldo.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const A: usize, const B: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: *mut f32,
    ldo: usize,
    beta: f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); B]; A];
    let k8 = k / 8 * 8;
    let mut p = 0;
    while p < k8 {
        let mut wv = [_mm256_setzero_ps(); B];
        for (b, v) in wv.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(w.add(b * k + p));
        }
        for (a, row) in acc.iter_mut().enumerate() {
            let xv = _mm256_loadu_ps(x.add(a * k + p));
            for b in 0..B {
                row[b] = _mm256_fmadd_ps(xv, wv[b], row[b]);
            }
        }
        p += 8;
    }
    for (a, row) in acc.iter().enumerate() {
        for (b, v) in row.iter().enumerate() {
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), *v);
            let mut s = lanes_sum(lanes);
            for q in k8..k {
                s += *x.add(a * k + q) * *w.add(b * k + q);
            }
            store(out.add(a * ldo + b), s, beta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gemm::{Gemm, GemmPath, Mat};
    use crate::model::Rng;

    fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Against the scalar reference GEMM (x · Wᵀ) within the f32 rounding bound, at edge shapes: 1 row, odd
    /// sizes, k not a multiple of 8, n not a multiple of the tile, more rows than MAX_ROWS; beta 0, 1 and 0.5;
    /// 1, 2 and 3 threads (through the thread split, which must not change a single bit).
    #[test]
    fn skinny_matches_the_reference_gemm() {
        let mut rng = Rng::new(9, 0);
        let shapes = [
            (1, 1, 1),
            (1, 7, 5),
            (1, 13, 896),
            (2, 33, 17),
            (3, 100, 64),
            (4, 3, 8),
            (5, 64, 257),
            (8, 131, 100),
            (8, 1000, 300),
            (11, 40, 9),
        ];
        for &(m, n, k) in &shapes {
            let x = rand(&mut rng, m * k);
            let w = rand(&mut rng, n * k);
            let c0 = rand(&mut rng, m * n);
            for beta in [0.0f32, 1.0, 0.5] {
                let mut want = c0.clone();
                Gemm {
                    m,
                    n,
                    k,
                    alpha: 1.0,
                    a: Mat::n(&x, k),
                    b: Mat::t(&w, k),
                    beta,
                }
                .serial(GemmPath::Scalar, &mut want, n);
                let mut first: Option<Vec<f32>> = None;
                for threads in [1usize, 2, 3] {
                    let mut got = c0.clone();
                    skinny_on(threads, m, n, k, &x, &w, beta, &mut got);
                    for i in 0..m {
                        for j in 0..n {
                            let mag: f64 = (0..k)
                                .map(|p| (x[i * k + p] * w[j * k + p]).abs() as f64)
                                .sum::<f64>()
                                + (beta * c0[i * n + j]).abs() as f64;
                            let bound = 2.0 * (k as f64 + 2.0) * 6e-8 * mag + 1e-6;
                            let e = (got[i * n + j] - want[i * n + j]).abs() as f64;
                            assert!(
                                e <= bound,
                                "{m}x{n}x{k} beta {beta} ({i},{j}): {} vs {} (err {e} > {bound})",
                                got[i * n + j],
                                want[i * n + j]
                            );
                        }
                    }
                    match &first {
                        None => first = Some(got),
                        Some(f) => {
                            assert_eq!(f, &got, "{m}x{n}x{k}: the thread split changed the result")
                        }
                    }
                }
                // a row's result does not depend on the other rows
                if m > 1 {
                    let mut solo = c0[..n].to_vec();
                    skinny(1, n, k, &x[..k], &w, beta, &mut solo);
                    assert_eq!(
                        &solo[..],
                        &first.as_ref().unwrap()[..n],
                        "{m}x{n}x{k}: row 0 alone differs"
                    );
                }
            }
        }
        // beta = 0 never reads out
        let mut o = vec![f32::NAN; 6];
        skinny(2, 3, 4, &[1.0; 8], &[1.0; 12], 0.0, &mut o);
        assert_eq!(o, vec![4.0; 6]);
        // m = 0 or n = 0: nothing to do
        skinny(0, 3, 4, &[], &[1.0; 12], 0.0, &mut []);
    }

    /// The portable path (CPUs without AVX2) and the AVX2 kernel agree to rounding (FMA vs multiply-add).
    #[test]
    fn portable_dot_matches() {
        let mut rng = Rng::new(10, 0);
        for k in [1usize, 8, 9, 31, 896] {
            let (a, b) = (rand(&mut rng, k), rand(&mut rng, k));
            let mut o = [0.0f32];
            skinny(1, 1, k, &a, &b, 0.0, &mut o);
            let d = dot8(&a, &b);
            let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            assert!(
                (o[0] - d).abs() <= 2.0 * (k as f32 + 2.0) * 6e-8 * mag + 1e-6,
                "k {k}: {} vs {d}",
                o[0]
            );
        }
    }
}
