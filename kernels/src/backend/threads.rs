//! Threads of the CPU backend: a small fork-join layer over `std::thread::scope`.
//!
//! Every parallel region splits its work into at most `num_threads()` contiguous blocks; the calling thread runs
//! the first block itself and scoped threads run the rest, so nothing outlives the call and no state is shared
//! between models (several models may run in one process). The thread count is `SPARK_THREADS` when set (1..=256),
//! else `std::thread::available_parallelism()`.
//!
//! `SharedMut` is the one escape hatch: a raw view of a mutable slice handed to several threads that write
//! provably disjoint parts of it (strided head columns in attention, column blocks in GEMM). Each use states
//! why its writes are disjoint.

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every parallel region on this thread executed inline (used when the caller already runs
/// one independent job per core, e.g. sampling groups of sequences).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let prev = SERIAL.with(|s| s.replace(true));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _r = Restore(prev);
    f()
}

/// The number of worker threads (including the caller) used by parallel regions (1 inside `serial`).
pub fn num_threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        return 1;
    }
    max_threads()
}

/// The configured thread count (`SPARK_THREADS` or the available parallelism).
pub fn max_threads() -> usize {
    *THREADS.get_or_init(|| {
        if let Ok(s) = std::env::var("SPARK_THREADS") {
            if let Ok(n) = s.trim().parse::<usize>() {
                if (1..=256).contains(&n) {
                    return n;
                }
            }
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    })
}

/// Splits `0..n` into `parts` contiguous ranges of near-equal size, each a multiple of `align` except the last.
pub fn split_range(n: usize, parts: usize, align: usize) -> Vec<(usize, usize)> {
    let parts = parts.max(1);
    let align = align.max(1);
    let units = n.div_ceil(align);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0usize;
    for p in 0..parts {
        let u0 = units * p / parts;
        let u1 = units * (p + 1) / parts;
        let end = (u1 * align).min(n);
        let s = (u0 * align).min(n);
        debug_assert_eq!(s, start);
        if end > s {
            out.push((s, end));
        }
        start = end;
    }
    out
}

/// Runs `f(i)` for every `i in 0..n`, spread over the threads in contiguous blocks (small `n` runs inline).
pub fn parallel_for<F: Fn(usize) + Sync>(n: usize, f: F) {
    let t = num_threads().min(n);
    if t <= 1 {
        for i in 0..n {
            f(i);
        }
        return;
    }
    let ranges = split_range(n, t, 1);
    let f = &f;
    std::thread::scope(|s| {
        for &(a, b) in &ranges[1..] {
            s.spawn(move || {
                for i in a..b {
                    f(i)
                }
            });
        }
        let (a, b) = ranges[0];
        for i in a..b {
            f(i);
        }
    });
}

/// Runs `f(first_row, block)` over `data` viewed as rows of `row_len`, split into contiguous row blocks, one
/// per thread. `min_rows` bounds the smallest block worth a thread.
pub fn par_rows<T: Send, F: Fn(usize, &mut [T]) + Sync>(data: &mut [T], row_len: usize, min_rows: usize, f: F) {
    let rows = data.len().checked_div(row_len).unwrap_or(0);
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, data);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let f = &f;
    std::thread::scope(|s| {
        let mut rest = data;
        let mut blocks = Vec::with_capacity(ranges.len());
        for &(a, b) in &ranges {
            let (head, tail) = rest.split_at_mut((b - a) * row_len);
            blocks.push((a, head));
            rest = tail;
        }
        let mut it = blocks.into_iter();
        let first = it.next();
        for (a, blk) in it {
            s.spawn(move || f(a, blk));
        }
        if let Some((a, blk)) = first {
            f(a, blk);
        }
    });
}

/// Like `par_rows` over two row-aligned buffers (e.g. an output and its per-row statistics).
pub fn par_rows2<T: Send, U: Send, F: Fn(usize, &mut [T], &mut [U]) + Sync>(
    a: &mut [T],
    a_row: usize,
    b: &mut [U],
    b_row: usize,
    min_rows: usize,
    f: F,
) {
    let rows = a.len().checked_div(a_row).unwrap_or(0);
    assert!(b.len() >= rows * b_row, "par_rows2: second buffer too short");
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, a, &mut b[..rows * b_row]);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let f = &f;
    std::thread::scope(|s| {
        let (mut ra, mut rb) = (a, &mut b[..rows * b_row]);
        let mut blocks = Vec::with_capacity(ranges.len());
        for &(x, y) in &ranges {
            let (ha, ta) = ra.split_at_mut((y - x) * a_row);
            let (hb, tb) = rb.split_at_mut((y - x) * b_row);
            blocks.push((x, ha, hb));
            ra = ta;
            rb = tb;
        }
        let mut it = blocks.into_iter();
        let first = it.next();
        for (x, ha, hb) in it {
            s.spawn(move || f(x, ha, hb));
        }
        if let Some((x, ha, hb)) = first {
            f(x, ha, hb);
        }
    });
}

/// Sums per-thread partial vectors: each block of rows `0..rows` produces a partial of length `len`
/// via `f(row_range, partial)`; the partials are added into `out`.
pub fn par_reduce_into<F: Fn(usize, usize, &mut [f32]) + Sync>(rows: usize, min_rows: usize, out: &mut [f32], f: F) {
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, rows, out);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let len = out.len();
    let f = &f;
    let partials: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranges[1..]
            .iter()
            .map(|&(a, b)| {
                s.spawn(move || {
                    let mut p = vec![0.0f32; len];
                    f(a, b, &mut p);
                    p
                })
            })
            .collect();
        let (a, b) = ranges[0];
        f(a, b, out);
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    for p in partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// A mutable slice shared by threads that write disjoint index sets of it. Creating one is safe; reading or
/// writing through it is `unsafe` and each caller documents why its index sets do not overlap.
#[derive(Clone, Copy)]
pub struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}
// SAFETY: a SharedMut is only a pointer + length; the unsafe accessors carry the disjointness obligation.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(s: &mut [T]) -> Self {
        SharedMut { ptr: s.as_mut_ptr(), len: s.len() }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// # Safety
    /// `off..off+n` must be in bounds and no other thread may access it during the returned borrow.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, off: usize, n: usize) -> &mut [T] {
        assert!(off.checked_add(n).is_some_and(|e| e <= self.len), "SharedMut: out of bounds");
        std::slice::from_raw_parts_mut(self.ptr.add(off), n)
    }
    /// # Safety
    /// As `slice`, for the tail starting at `off`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn tail(&self, off: usize) -> &mut [T] {
        assert!(off <= self.len, "SharedMut: out of bounds");
        std::slice::from_raw_parts_mut(self.ptr.add(off), self.len - off)
    }
}
