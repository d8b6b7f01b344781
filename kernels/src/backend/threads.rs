//! Threads of the CPU backend: fork-join parallel regions.
//!
//! Every parallel region splits its work into at most `num_threads()` tasks (contiguous blocks), claimed one at
//! a time by the calling thread and `num_threads() − 1` workers of a rayon pool (rayon 1.12; measured against
//! the hand-written condition-variable pool it replaced, interleaved, with no loss — docs/benchmarks.md). A
//! region started while another runs (another model on another libuv worker, a nested region) shares the same
//! workers: rayon's work stealing, no extra threads. The region call returns only after every task finished,
//! so tasks may borrow from the caller's stack. The thread count is `SPARK_THREADS` when set (1..=256), else
//! `std::thread::available_parallelism()`.
//!
//! `SharedMut` is the one escape hatch: a raw view of a mutable slice handed to several threads that write
//! provably disjoint parts of it (strided head columns in attention, column blocks in GEMM). Each use states
//! why its writes are disjoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

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
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
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

// ---------------------------------------------------------------------------------------------------------------
// Regions on rayon's pool.

/// The pool: `max_threads() − 1` rayon workers (the calling thread is the last one). None when there is one
/// thread, or when the workers could not be started (then regions run inline).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = max_threads();
        if n <= 1 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n - 1)
            .thread_name(|k| format!("spark-cpu-{k}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `f(i)` for every `i in 0..n` (n small: one task per block of work): the caller and up to
/// `num_threads() − 1` pool workers claim tasks one at a time until none is left, so a thread that loses its
/// core leaves its share to the others. Returns when every task has finished; a panic in a task is re-raised
/// here after that (rayon's scope). Inline when there is one thread or one task.
fn run_tasks(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if n == 0 {
        return;
    }
    let pool = match pool() {
        Some(p) if n > 1 && num_threads() > 1 => p,
        _ => return (0..n).for_each(f),
    };
    let next = AtomicUsize::new(0);
    let claim = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    };
    pool.in_place_scope(|s| {
        for _ in 1..num_threads().min(n) {
            s.spawn(|_| claim());
        }
        claim();
    });
}

/// Runs `f(i)` for every `i in 0..n`, spread over the threads in contiguous blocks (small `n` runs inline).
pub fn parallel_for<F: Fn(usize) + Sync>(n: usize, f: F) {
    let t = num_threads().min(n);
    if t <= 1 {
        (0..n).for_each(f);
        return;
    }
    let ranges = split_range(n, t, 1);
    run_tasks(ranges.len(), &|k| {
        let (a, b) = ranges[k];
        (a..b).for_each(&f);
    });
}

/// Runs `f(first_row, block)` over `data` viewed as rows of `row_len`, split into contiguous row blocks, one
/// per thread. `min_rows` bounds the smallest block worth a thread.
pub fn par_rows<T: Send, F: Fn(usize, &mut [T]) + Sync>(
    data: &mut [T],
    row_len: usize,
    min_rows: usize,
    f: F,
) {
    let rows = data.len().checked_div(row_len).unwrap_or(0);
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, data);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let last = ranges.len() - 1;
    let total = data.len();
    let sh = SharedMut::new(data);
    run_tasks(ranges.len(), &|k| {
        let (a, b) = ranges[k];
        let end = if k == last { total } else { b * row_len };
        // SAFETY: the row ranges are disjoint, so the blocks are.
        f(a, unsafe { sh.slice(a * row_len, end - a * row_len) });
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
    assert!(
        b.len() >= rows * b_row,
        "par_rows2: second buffer too short"
    );
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, a, &mut b[..rows * b_row]);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let (sa, sb) = (SharedMut::new(a), SharedMut::new(b));
    run_tasks(ranges.len(), &|k| {
        let (x, y) = ranges[k];
        // SAFETY: the row ranges are disjoint, so the blocks of both buffers are.
        let (ba, bb) = unsafe {
            (
                sa.slice(x * a_row, (y - x) * a_row),
                sb.slice(x * b_row, (y - x) * b_row),
            )
        };
        f(x, ba, bb);
    });
}

/// Sums per-thread partial vectors: each block of rows `0..rows` produces a partial of length `len`
/// via `f(row_range, partial)`; the partials are added into `out`.
pub fn par_reduce_into<F: Fn(usize, usize, &mut [f32]) + Sync>(
    rows: usize,
    min_rows: usize,
    out: &mut [f32],
    f: F,
) {
    let t = num_threads().min(rows / min_rows.max(1)).max(1);
    if t <= 1 {
        f(0, rows, out);
        return;
    }
    let ranges = split_range(rows, t, 1);
    let len = out.len();
    let partials: Vec<Mutex<Vec<f32>>> =
        (1..ranges.len()).map(|_| Mutex::new(Vec::new())).collect();
    let out_m = Mutex::new(out);
    run_tasks(ranges.len(), &|k| {
        let (a, b) = ranges[k];
        if k == 0 {
            let mut o = out_m.lock().unwrap_or_else(|e| e.into_inner());
            f(a, b, &mut o);
        } else {
            let mut p = vec![0.0f32; len];
            f(a, b, &mut p);
            *partials[k - 1].lock().unwrap_or_else(|e| e.into_inner()) = p;
        }
    });
    let out = out_m.into_inner().unwrap_or_else(|e| e.into_inner());
    for p in partials {
        let p = p.into_inner().unwrap_or_else(|e| e.into_inner());
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// Runs the closures `f(k)` for k in 0..n as one region and collects their results in order.
pub fn par_map<R: Send, F: Fn(usize) -> R + Sync>(n: usize, f: F) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    run_tasks(n, &|k| {
        let r = f(k);
        *slots[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("task ran")
        })
        .collect()
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
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
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
        assert!(
            off.checked_add(n).is_some_and(|e| e <= self.len),
            "SharedMut: out of bounds"
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_every_task_once_nest_and_run_concurrently() {
        for n in [0usize, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            parallel_for(n, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
        }
        // a region inside a region
        let total = AtomicUsize::new(0);
        parallel_for(4, |_| {
            parallel_for(5, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 20);
        // regions from several threads at once
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let mut v = vec![0u32; 1000];
                        par_rows(&mut v, 10, 1, |r0, blk| {
                            blk.iter_mut()
                                .enumerate()
                                .for_each(|(i, x)| *x = (r0 * 10 + i) as u32)
                        });
                        assert!(v.iter().enumerate().all(|(i, &x)| x as usize == i));
                    }
                });
            }
        });
        let mut out = vec![1.0f32; 3];
        par_reduce_into(100, 1, &mut out, |a, b, p| {
            p.iter_mut().for_each(|x| *x += (b - a) as f32)
        });
        assert_eq!(out, vec![101.0; 3]);
        assert_eq!(par_map(5, |k| k * k), vec![0, 1, 4, 9, 16]);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_survives() {
        let r = std::panic::catch_unwind(|| {
            parallel_for(8, |i| {
                if i == 5 {
                    panic!("task 5 fails");
                }
            })
        });
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        parallel_for(8, |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 8);
    }
}
