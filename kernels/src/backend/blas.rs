//! Run-time binding to a CBLAS library (OpenBLAS): `dlopen("libopenblas.so.0")`, `dlsym("cblas_sgemm")`.
//!
//! Nothing is linked at build time, so the addon loads on machines without OpenBLAS and falls back to the
//! built-in kernel. OpenBLAS's own thread pool is set to ONE thread at load: the backend splits every GEMM over
//! its own threads (`threads.rs`), so two pools never compete for the cores. The benchmark asks for OpenBLAS's
//! own multi-threading explicitly (`with_blas_threads`) to measure it standalone.

use super::gemm::{Gemm, Kernel};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Mutex, OnceLock};

// <dlfcn.h> (glibc ≥ 2.34 exports these from libc.so.6, which std already links).
extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;

// <cblas.h>: enum CBLAS_ORDER / CBLAS_TRANSPOSE values.
pub const CBLAS_ROW_MAJOR: c_int = 101;
pub const CBLAS_NO_TRANS: c_int = 111;
pub const CBLAS_TRANS: c_int = 112;

/// void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_TRANSPOSE TransA,
///   OPENBLAS_CONST enum CBLAS_TRANSPOSE TransB, OPENBLAS_CONST blasint M, OPENBLAS_CONST blasint N,
///   OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda,
///   OPENBLAS_CONST float *B, OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
///   OPENBLAS_CONST blasint ldc);   (blasint = int in the LP64 build Debian ships)
type SgemmFn = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
/// void openblas_set_num_threads(int num_threads);
type SetThreadsFn = unsafe extern "C" fn(c_int);
/// char* openblas_get_corename(void);
type CoreNameFn = unsafe extern "C" fn() -> *const c_char;

pub struct Blas {
    sgemm: SgemmFn,
    set_threads: Option<SetThreadsFn>,
    pub library: String,
    /// OpenBLAS's kernel set for this CPU (`openblas_get_corename`: "Haswell", "SkylakeX", "Zen", …): a
    /// DYNAMIC_ARCH build picks it at load time, and it decides the rounding of every product, so two CPUs
    /// can train the same seed to different weights. None for a CBLAS without the call.
    pub core: Option<String>,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
static THREAD_LOCK: Mutex<()> = Mutex::new(());

unsafe fn sym(h: *mut c_void, name: &CStr) -> *mut c_void {
    dlsym(h, name.as_ptr())
}

fn load() -> Option<Blas> {
    for lib in [c"libopenblas.so.0", c"libopenblas.so"] {
        // SAFETY: dlopen/dlsym with NUL-terminated names; a null result means "not found".
        unsafe {
            let h = dlopen(lib.as_ptr(), RTLD_NOW);
            if h.is_null() {
                continue;
            }
            let s = sym(h, c"cblas_sgemm");
            if s.is_null() {
                continue;
            }
            // SAFETY: the symbol is cblas_sgemm with the C signature declared above.
            let sgemm: SgemmFn = std::mem::transmute::<*mut c_void, SgemmFn>(s);
            let t = sym(h, c"openblas_set_num_threads");
            let set_threads = if t.is_null() {
                None
            } else {
                Some(std::mem::transmute::<*mut c_void, SetThreadsFn>(t))
            };
            if let Some(f) = set_threads {
                f(1);
            }
            let c = sym(h, c"openblas_get_corename");
            let core = if c.is_null() {
                None
            } else {
                // SAFETY: the symbol is openblas_get_corename with the C signature declared above; it
                // returns a static NUL-terminated string (or null).
                let f = std::mem::transmute::<*mut c_void, CoreNameFn>(c);
                let name = f();
                (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().trim().to_string())
            };
            return Some(Blas {
                sgemm,
                set_threads,
                library: lib.to_string_lossy().into_owned(),
                core,
            });
        }
    }
    None
}

/// The loaded CBLAS library, if any (loaded once per process).
pub fn blas() -> Option<&'static Blas> {
    BLAS.get_or_init(load).as_ref()
}

impl Kernel for Blas {
    /// Row-major C = alpha·op(A)·op(B) + beta·C through cblas_sgemm. The slice lengths are checked here, so
    /// the foreign call never reads or writes out of bounds.
    fn sgemm(&self, g: &Gemm<'_>, c: &mut [f32], ldc: usize) {
        if g.m == 0 || g.n == 0 {
            return;
        }
        g.check(c, ldc);
        let lim = c_int::MAX as usize;
        let dims = [g.m, g.n, g.k, g.a.ld, g.b.ld, ldc];
        assert!(dims.iter().all(|&d| d <= lim), "sgemm: size > INT_MAX");
        let trans = |t: bool| if t { CBLAS_TRANS } else { CBLAS_NO_TRANS };
        // SAFETY: bounds checked above (Gemm::check); the pointers are valid for the call.
        unsafe {
            (self.sgemm)(
                CBLAS_ROW_MAJOR,
                trans(g.a.trans),
                trans(g.b.trans),
                g.m as c_int,
                g.n as c_int,
                g.k as c_int,
                g.alpha,
                g.a.data.as_ptr(),
                g.a.ld.max(1) as c_int,
                g.b.data.as_ptr(),
                g.b.ld.max(1) as c_int,
                g.beta,
                c.as_mut_ptr(),
                ldc.max(1) as c_int,
            )
        }
    }
}

impl Blas {
    /// Runs `f` with OpenBLAS's own thread pool set to `threads`, then back to 1 (benchmarks only; serialised).
    pub fn with_blas_threads<R>(&self, threads: usize, f: impl FnOnce() -> R) -> R {
        let _g = THREAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(st) = self.set_threads {
            // SAFETY: plain C call with an int.
            unsafe { st(threads.max(1) as c_int) };
        }
        let r = f();
        if let Some(st) = self.set_threads {
            // SAFETY: as above.
            unsafe { st(1) };
        }
        r
    }
}
