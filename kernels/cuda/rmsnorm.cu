// RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), per row of width `cols`.
// Launch: fwd and bwd_dx one block per row (block 256..1024, a multiple of 32); bwd_dw a grid of column tiles
// of 32 with block (32, 8) (launch.rs).
#include "common.cuh"

template <typename T>
__device__ void rmsnorm_fwd(const T* __restrict__ x, const float* __restrict__ w, T* __restrict__ y,
                            float* __restrict__ rstd, int rows, int cols, float eps) {
  __shared__ float scratch[32];
  const i64 r = blockIdx.x;
  if (r >= rows) return;
  const T* xr = x + r * cols;
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_f(xr[c]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float rs = rsqrtf(ss / (float)cols + eps);
  if (threadIdx.x == 0 && rstd) rstd[r] = rs;
  T* yr = y + r * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = from_f<T>(to_f(xr[c]) * rs * w[c]);
}

// dx = rstd * w * dy - x * rstd^3 / cols * sum_j(dy_j * w_j * x_j); with `accumulate` the result is added to dx
// (the residual stream's gradient), else written.
template <typename T>
__device__ void rmsnorm_bwd_dx(const T* __restrict__ x, const float* __restrict__ w, const float* __restrict__ dy,
                               const float* __restrict__ rstd, float* __restrict__ dx, int rows, int cols,
                               int accumulate) {
  __shared__ float scratch[32];
  const i64 r = blockIdx.x;
  if (r >= rows) return;
  const T* xr = x + r * cols;
  const float* dyr = dy + r * cols;
  float dot = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += dyr[c] * w[c] * to_f(xr[c]);
  dot = block_sum(dot, scratch);
  const float rs = rstd[r];
  const float k = rs * rs * rs * dot / (float)cols;
  float* dxr = dx + r * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = rs * w[c] * dyr[c] - to_f(xr[c]) * k;
    dxr[c] = accumulate ? dxr[c] + v : v;
  }
}

// dw[c] += sum_rows dy[r, c] * x[r, c] * rstd[r]. Block (32, 8): threadIdx.x a column of the tile, threadIdx.y
// strides the rows; the 8 partial sums are added in shared memory (deterministic; no atomics).
template <typename T>
__device__ void rmsnorm_bwd_dw(const T* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ rstd,
                               float* __restrict__ dw, int rows, int cols) {
  __shared__ float part[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.f;
  if (c < cols)
    for (int r = threadIdx.y; r < rows; r += 8) acc += dy[(i64)r * cols + c] * to_f(x[(i64)r * cols + c]) * rstd[r];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float s = 0.f;
    for (int i = 0; i < 8; i++) s += part[i][threadIdx.x];
    dw[c] += s;
  }
}

#define RMSNORM(S, T)                                                                                           \
  extern "C" __global__ void __launch_bounds__(1024) rmsnorm_fwd_##S(const T* x, const float* w, T* y, float* rstd, int rows, int cols, \
                                             float eps) {                                                       \
    rmsnorm_fwd<T>(x, w, y, rstd, rows, cols, eps);                                                             \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(1024) rmsnorm_bwd_dx_##S(const T* x, const float* w, const float* dy, const float* rstd, \
                                                float* dx, int rows, int cols, int accumulate) {                \
    rmsnorm_bwd_dx<T>(x, w, dy, rstd, dx, rows, cols, accumulate);                                              \
  }                                                                                                             \
  extern "C" __global__ void rmsnorm_bwd_dw_##S(const T* x, const float* dy, const float* rstd, float* dw,      \
                                                int rows, int cols) {                                           \
    rmsnorm_bwd_dw<T>(x, dy, rstd, dw, rows, cols);                                                             \
  }
INSTANTIATE_T(RMSNORM)
