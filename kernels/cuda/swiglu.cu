// SwiGLU: h = silu(g) * u, silu(g) = g * sigmoid(g); g and u are (rows, inter), possibly the two halves of
// one (rows, 2 * inter) product (row stride `stride`). Launch: 1-D grid-stride, block 256 (launch.rs).
#include "common.cuh"

__device__ __forceinline__ float sigmoidf(float x) { return 1.f / (1.f + __expf(-x)); }

template <typename T>
__device__ void swiglu_fwd(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ h, int rows, int inter,
                           int stride) {
  const i64 n = (i64)rows * inter;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const i64 r = i / inter, c = i - r * inter;
    const float gv = to_f(g[r * stride + c]), uv = to_f(u[r * stride + c]);
    h[i] = from_f<T>(gv * sigmoidf(gv) * uv);
  }
}

// dg = dh * u * silu'(g), silu'(g) = s * (1 + g * (1 - s)); du = dh * silu(g). dh (rows, inter) FP32; dg, du
// written at row stride `stride` (FP32).
template <typename T>
__device__ void swiglu_bwd(const T* __restrict__ g, const T* __restrict__ u, const float* __restrict__ dh,
                           float* __restrict__ dg, float* __restrict__ du, int rows, int inter, int stride) {
  const i64 n = (i64)rows * inter;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const i64 r = i / inter, c = i - r * inter;
    const float gv = to_f(g[r * stride + c]), uv = to_f(u[r * stride + c]), d = dh[i];
    const float s = sigmoidf(gv);
    dg[r * stride + c] = d * uv * s * (1.f + gv * (1.f - s));
    du[r * stride + c] = d * gv * s;
  }
}

#define SWIGLU(S, T)                                                                                            \
  extern "C" __global__ void swiglu_fwd_##S(const T* g, const T* u, T* h, int rows, int inter, int stride) {    \
    swiglu_fwd<T>(g, u, h, rows, inter, stride);                                                                \
  }                                                                                                             \
  extern "C" __global__ void swiglu_bwd_##S(const T* g, const T* u, const float* dh, float* dg, float* du,      \
                                            int rows, int inter, int stride) {                                  \
    swiglu_bwd<T>(g, u, dh, dg, du, rows, inter, stride);                                                       \
  }
INSTANTIATE_T(SWIGLU)
