//! Matrix products on the device through cuBLASLt (built, not yet verified on a GPU).
//!
//! The model is row-major, as on the CPU (`backend::gemm::sgemm`): C (m × n) = α·op(A)·op(B) + β·C with
//! leading dimensions in elements. cuBLASLt is column-major, and a row-major matrix is the column-major
//! storage of its transpose, so the product is issued as Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap, m and n
//! swap, the transpose flags stay with their operands (`ColMajor::of`). Three precisions:
//!
//! - `F32`: FP32 inputs, `CUBLAS_COMPUTE_32F` (no TF32): the parity mode the GPU check compares with the CPU;
//! - `Tf32`: FP32 inputs, `CUBLAS_COMPUTE_32F_FAST_TF32` (10-bit mantissa products, FP32 sums);
//! - `Bf16`: BF16 inputs (raw bits in `u16` buffers), FP32 accumulation, FP32 output: the training mode.
//!
//! C and D are always FP32. Each distinct (shape, transposes, precision) is planned once — the matmul
//! descriptor, the three layouts and the algorithm cuBLASLt's heuristic picks for the workspace — and the
//! plan is reused (a training step issues the same few shapes every layer). cudarc's safe `Matmul` builds
//! and runs the heuristic on every call and its FP32 path is always TF32, so the plans here use its
//! `result` layer directly.
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use crate::error::{Error, Result};

/// Workspace cuBLASLt may use (NVIDIA's recommendation: 32 MiB on Hopper, 4 MiB before).
pub fn workspace_bytes(sm: u32) -> usize {
    if sm >= 90 {
        32 << 20
    } else {
        4 << 20
    }
}

/// Input precision and compute mode of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    Tf32,
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::invalid(format!(
                "unknown matmul precision {s:?}: expected f32, tf32 or bf16"
            ))),
        }
    }
    fn input_type(self) -> sys::cudaDataType {
        match self {
            Precision::F32 | Precision::Tf32 => sys::cudaDataType_t::CUDA_R_32F,
            Precision::Bf16 => sys::cudaDataType_t::CUDA_R_16BF,
        }
    }
    fn compute_type(self) -> sys::cublasComputeType_t {
        match self {
            Precision::Tf32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            Precision::F32 | Precision::Bf16 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }
}

/// A row-major product C (m × n) = α·op(A)·op(B) + β·C, with `sgemm`'s arguments: op(A) is m × k (A stored
/// k × m when `ta`), op(B) is k × n (B stored n × k when `tb`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Product {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// Elements a row-major `rows × cols` matrix with leading dimension `ld` spans.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

impl Product {
    /// Packed operands (leading dimension = row length) for C = op(A)·op(B) (α = 1, β = 0).
    pub fn packed(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> Product {
        Product {
            ta,
            tb,
            m,
            n,
            k,
            lda: if ta { m } else { k },
            ldb: if tb { k } else { n },
            ldc: n,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    /// Stored shape (rows, cols) of A and of B.
    fn a_stored(&self) -> (usize, usize) {
        if self.ta {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }
    fn b_stored(&self) -> (usize, usize) {
        if self.tb {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }
    /// Elements each operand must hold (A, B, C).
    pub fn extents(&self) -> (usize, usize, usize) {
        let (ar, ac) = self.a_stored();
        let (br, bc) = self.b_stored();
        (
            span(ar, ac, self.lda),
            span(br, bc, self.ldb),
            span(self.m, self.n, self.ldc),
        )
    }
    /// Checks sizes, leading dimensions and scalars; the limits are cuBLASLt's (`int64` extents, but the
    /// heuristics and kernels are only certain below 2³¹ per dimension).
    pub fn check(&self) -> Result<()> {
        const MAX_DIM: usize = i32::MAX as usize;
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(Error::invalid(format!(
                "empty product {}×{}×{}",
                self.m, self.n, self.k
            )));
        }
        if self.m > MAX_DIM || self.n > MAX_DIM || self.k > MAX_DIM {
            return Err(Error::invalid(format!(
                "product {}×{}×{} has a dimension above 2^31-1",
                self.m, self.n, self.k
            )));
        }
        let (_, ac) = self.a_stored();
        let (_, bc) = self.b_stored();
        for (name, ld, cols) in [
            ("lda", self.lda, ac),
            ("ldb", self.ldb, bc),
            ("ldc", self.ldc, self.n),
        ] {
            if ld < cols || ld > MAX_DIM {
                return Err(Error::invalid(format!(
                    "{name} {ld} is not in {cols}..=2^31-1 (the stored row length)"
                )));
            }
        }
        if !self.alpha.is_finite() || !self.beta.is_finite() {
            return Err(Error::invalid("alpha and beta must be finite"));
        }
        Ok(())
    }
}

/// The column-major cuBLASLt call that computes a row-major `Product`: D = α·op(X)·op(Y) + β·C with X the
/// first operand (rows × cols as cuBLASLt sees it) and Y the second; X is B and Y is A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ColMajor {
    pub trans_x: bool,
    pub trans_y: bool,
    /// Rows of D (= n of the row-major product).
    pub m: u64,
    /// Columns of D (= m).
    pub n: u64,
    pub k: u64,
    /// Stored (rows, cols) of X and Y in column-major terms, with their leading dimensions.
    pub x: (u64, u64, i64),
    pub y: (u64, u64, i64),
    pub ldd: i64,
}

impl ColMajor {
    pub fn of(p: &Product) -> ColMajor {
        // A row-major r × c matrix with row stride ld is a column-major c × r matrix with leading dimension ld.
        let (br, bc) = p.b_stored();
        let (ar, ac) = p.a_stored();
        ColMajor {
            trans_x: p.tb,
            trans_y: p.ta,
            m: p.n as u64,
            n: p.m as u64,
            k: p.k as u64,
            x: (bc as u64, br as u64, p.ldb as i64),
            y: (ac as u64, ar as u64, p.lda as i64),
            ldd: p.ldc as i64,
        }
    }
}

/// Element types cuBLASLt reads as inputs: `f32`, and BF16 as raw bits (`u16`).
pub trait Input: DeviceRepr {
    fn accepts(p: Precision) -> bool;
}
impl Input for f32 {
    fn accepts(p: Precision) -> bool {
        matches!(p, Precision::F32 | Precision::Tf32)
    }
}
impl Input for u16 {
    fn accepts(p: Precision) -> bool {
        p == Precision::Bf16
    }
}

fn blas(what: &str, e: lt::CublasError) -> Error {
    Error::model(format!("cuBLASLt {what}: {e:?}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    call: ColMajor,
    precision: Precision,
}

/// A planned product: descriptor, layouts of X, Y and C = D, and the algorithm.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    x: sys::cublasLtMatrixLayout_t,
    y: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created by this plan and used by nothing else; errors cannot be reported from drop.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.x);
            let _ = lt::destroy_matrix_layout(self.y);
            let _ = lt::destroy_matrix_layout(self.d);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// Most distinct products planned at once; beyond it the cache is cleared (a model has a handful of shapes
/// per micro-batch size, so this bounds memory against a caller that varies them without end).
pub const MAX_PLANS: usize = 256;

/// A cuBLASLt handle on one stream, its workspace and the plans made so far.
pub struct Lt {
    handle: sys::cublasLtHandle_t,
    stream: Arc<CudaStream>,
    workspace: CudaSlice<u8>,
    plans: HashMap<PlanKey, Plan>,
}

// SAFETY: the handle is only used through `&mut self` (one caller at a time) on the stream it was made for.
unsafe impl Send for Lt {}

impl Lt {
    pub fn new(stream: Arc<CudaStream>, sm: u32) -> Result<Lt> {
        let workspace = stream
            .alloc_zeros::<u8>(workspace_bytes(sm))
            .map_err(|e| Error::model(format!("CUDA driver: {e}")))?;
        let handle = lt::create_handle().map_err(|e| blas("handle", e))?;
        Ok(Lt {
            handle,
            stream,
            workspace,
            plans: HashMap::new(),
        })
    }

    /// Products planned so far.
    pub fn plans(&self) -> usize {
        self.plans.len()
    }

    fn plan(&mut self, key: PlanKey) -> Result<()> {
        if !self.plans.contains_key(&key) && self.plans.len() >= MAX_PLANS {
            self.plans.clear();
        }
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(&key)?;
            self.plans.insert(key, plan);
        }
        Ok(())
    }

    fn make_plan(&self, key: &PlanKey) -> Result<Plan> {
        let c = &key.call;
        let input = key.precision.input_type();
        let f32t = sys::cudaDataType_t::CUDA_R_32F;
        let desc = lt::create_matmul_desc(key.precision.compute_type(), f32t)
            .map_err(|e| blas("matmul descriptor", e))?;
        // Every object is owned by `plan` from here on, so an error below frees what was made.
        let mut plan = Plan {
            desc,
            x: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            d: std::ptr::null_mut(),
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        for (attr, on) in [
            (
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                c.trans_x,
            ),
            (
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                c.trans_y,
            ),
        ] {
            // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 (an `int` in cuBLAS's C header)
            let op: i32 = on.into();
            // SAFETY: the attribute is a cublasOperation_t (int-sized), passed by address with its size.
            unsafe {
                lt::set_matmul_desc_attribute(
                    plan.desc,
                    attr,
                    (&op) as *const i32 as *const c_void,
                    std::mem::size_of::<i32>(),
                )
            }
            .map_err(|e| blas("transpose attribute", e))?;
        }
        plan.x = lt::create_matrix_layout(input, c.x.0, c.x.1, c.x.2)
            .map_err(|e| blas("layout of B", e))?;
        plan.y = lt::create_matrix_layout(input, c.y.0, c.y.1, c.y.2)
            .map_err(|e| blas("layout of A", e))?;
        plan.d =
            lt::create_matrix_layout(f32t, c.m, c.n, c.ldd).map_err(|e| blas("layout of C", e))?;
        let pref = lt::create_matmul_pref().map_err(|e| blas("preference", e))?;
        let size = self.workspace.len();
        // SAFETY: the preference was just created; the attribute is a size_t passed by address.
        let heuristic = unsafe {
            let r = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&size) as *const usize as *const c_void,
                std::mem::size_of::<usize>(),
            )
            .and_then(|()| {
                lt::get_matmul_algo_heuristic(
                    self.handle,
                    plan.desc,
                    plan.x,
                    plan.y,
                    plan.d,
                    plan.d,
                    pref,
                )
            });
            let _ = lt::destroy_matmul_pref(pref);
            r
        }
        .map_err(|e| {
            blas(
                &format!(
                    "no algorithm for {}×{}×{} in {:?}",
                    c.n, c.m, c.k, key.precision
                ),
                e,
            )
        })?;
        plan.algo = heuristic.algo;
        Ok(plan)
    }

    /// C = α·op(A)·op(B) + β·C on the device, row-major (see the module docs). `a` and `b` are `f32` for
    /// `F32`/`Tf32` and BF16 bits (`u16`) for `Bf16`; every buffer is checked against the product's extents
    /// before the call. Asynchronous on the stream, like a kernel launch.
    pub fn gemm<T: Input>(
        &mut self,
        p: &Product,
        precision: Precision,
        a: &CudaSlice<T>,
        b: &CudaSlice<T>,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        p.check()?;
        if !T::accepts(precision) {
            return Err(Error::invalid(format!(
                "{precision:?} products take {} inputs",
                if precision == Precision::Bf16 {
                    "BF16 (u16)"
                } else {
                    "f32"
                }
            )));
        }
        let (na, nb, nc) = p.extents();
        for (name, need, have) in [("A", na, a.len()), ("B", nb, b.len()), ("C", nc, c.len())] {
            if have < need {
                return Err(Error::invalid(format!(
                    "{name} holds {have} elements, the product needs {need}"
                )));
            }
        }
        let key = PlanKey {
            call: ColMajor::of(p),
            precision,
        };
        self.plan(key)?;
        let stream = self.stream.clone();
        let size = self.workspace.len();
        let plan = &self.plans[&key];
        let (w, _w) = self.workspace.device_ptr_mut(&stream);
        let (pa, _ra) = a.device_ptr(&stream);
        let (pb, _rb) = b.device_ptr(&stream);
        let (pc, _rc) = c.device_ptr_mut(&stream);
        // SAFETY: the plan's layouts describe buffers at least as large as checked above; X is B and Y is A
        // (ColMajor::of); C is read (β) and written in place, as cuBLASLt allows when C and D share a layout.
        unsafe {
            lt::matmul(
                self.handle,
                plan.desc,
                (&p.alpha) as *const f32 as *const c_void,
                (&p.beta) as *const f32 as *const c_void,
                pb as *const c_void,
                plan.x,
                pa as *const c_void,
                plan.y,
                pc as *const c_void,
                plan.d,
                pc as *mut c_void,
                plan.d,
                &plan.algo,
                w as *mut c_void,
                size,
                stream.cu_stream() as *mut _,
            )
        }
        .map_err(|e| blas("matmul", e))
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in `new`, destroyed once; the plans that used it are gone.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

/// BF16 bits of an f32 (round to nearest even), as the device buffers of `Precision::Bf16` hold them.
pub fn to_bf16_bits(x: &[f32]) -> Vec<u16> {
    x.iter()
        .map(|v| half::bf16::from_f32(*v).to_bits())
        .collect()
}

/// The f32 values of BF16 bits (exact).
pub fn from_bf16_bits(x: &[u16]) -> Vec<f32> {
    x.iter()
        .map(|b| half::bf16::from_bits(*b).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gemm::sgemm;

    /// Column-major reference: D = α·op(X)·op(Y) + β·D, as cuBLASLt defines it.
    fn colmajor_ref(c: &ColMajor, alpha: f32, x: &[f32], y: &[f32], beta: f32, d: &mut [f32]) {
        let at = |buf: &[f32], (_, _, ld): (u64, u64, i64), r: usize, col: usize| {
            buf[col * ld as usize + r]
        };
        for j in 0..c.n as usize {
            for i in 0..c.m as usize {
                let mut s = 0.0f64;
                for l in 0..c.k as usize {
                    let xv = if c.trans_x {
                        at(x, c.x, l, i)
                    } else {
                        at(x, c.x, i, l)
                    };
                    let yv = if c.trans_y {
                        at(y, c.y, j, l)
                    } else {
                        at(y, c.y, l, j)
                    };
                    s += xv as f64 * yv as f64;
                }
                let o = j * c.ldd as usize + i;
                d[o] = (alpha as f64 * s + beta as f64 * d[o] as f64) as f32;
            }
        }
    }

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn the_column_major_call_computes_the_row_major_product() {
        // every transpose pair, padded leading dimensions, α and β, odd sizes
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let (m, n, k) = (5, 7, 3);
            let mut p = Product::packed(ta, tb, m, n, k);
            p.lda += 2;
            p.ldb += 1;
            p.ldc += 3;
            p.alpha = 0.75;
            p.beta = -0.5;
            p.check().unwrap();
            let (na, nb, nc) = p.extents();
            let (a, b, c0) = (vals(na, 1), vals(nb, 2), vals(nc, 3));
            let mut want = c0.clone();
            sgemm(
                ta, tb, m, n, k, p.alpha, &a, p.lda, &b, p.ldb, p.beta, &mut want, p.ldc,
            );
            let call = ColMajor::of(&p);
            let mut got = c0.clone();
            colmajor_ref(&call, p.alpha, &b, &a, p.beta, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-5,
                    "ta {ta} tb {tb} element {i}: {g} vs {w}"
                );
            }
            // the padding between rows of C is not written
            for r in 0..m - 1 {
                for col in n..p.ldc {
                    assert_eq!(got[r * p.ldc + col], c0[r * p.ldc + col]);
                }
            }
        }
    }

    #[test]
    fn products_are_checked_before_any_device_call() {
        let ok = Product::packed(false, true, 4, 6, 8);
        assert_eq!(ok.extents(), (32, 48, 24));
        ok.check().unwrap();
        let bad = |f: fn(&mut Product), want: &str| {
            let mut p = ok;
            f(&mut p);
            let e = p.check().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(|p| p.k = 0, "empty product");
        bad(|p| p.lda = 7, "lda 7");
        bad(|p| p.ldb = 7, "ldb 7");
        bad(|p| p.ldc = 5, "ldc 5");
        bad(|p| p.m = 1 << 31, "above 2^31-1");
        bad(|p| p.alpha = f32::NAN, "finite");
        assert_eq!(Precision::parse("bf16").unwrap(), Precision::Bf16);
        assert!(Precision::parse("fp8")
            .unwrap_err()
            .to_string()
            .contains("f32, tf32 or bf16"));
        assert!(f32::accepts(Precision::Tf32) && !f32::accepts(Precision::Bf16));
        assert!(u16::accepts(Precision::Bf16) && !u16::accepts(Precision::F32));
    }

    #[test]
    fn bf16_bits_round_to_nearest_even() {
        let x = [1.0f32, -2.5, 1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0];
        let back = from_bf16_bits(&to_bf16_bits(&x));
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 rounds up to 1 + 2^-6
        assert_eq!(back, vec![1.0, -2.5, 1.0, 1.0 + 4.0 / 256.0]);
    }
}
