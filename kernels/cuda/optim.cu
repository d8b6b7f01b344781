// Gradient norm, clipping and AdamW over the flat FP32 buffers (kernels/src/backend/ops.rs::adamw's formula).
// Launch: sumsq_partial and adamw 1-D grid-stride (block 256, grid <= 1024 blocks), sumsq_final one block of
// 1024 (launch.rs).
#include "common.cuh"

// partial[blockIdx.x] = sum of g[i]^2 over this block's grid-stride share (in double: a 1.5e9-element sum).
extern "C" __global__ void sumsq_partial(const float* __restrict__ g, i64 n, double* __restrict__ partial) {
  __shared__ double sh[1024];
  double acc = 0.0;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const double v = g[i];
    acc += v * v;
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x >> 1; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

// out[0] = ||g|| (sqrt of the sum of `parts` partials, in a fixed order: deterministic), out[1] = the gradient
// scale of clipping to max_norm (1 when max_norm <= 0 or the norm is within it; NaN when the norm is not
// finite, so AdamW refuses the step: see adamw), as floats for the host and the AdamW kernel.
extern "C" __global__ void __launch_bounds__(1024) sumsq_final(const double* __restrict__ partial, int parts, float max_norm,
                                       float* __restrict__ out) {
  __shared__ double sh[1024];
  double acc = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) acc += partial[i];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x >> 1; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double norm = sqrt(sh[0]);
    out[0] = (float)norm;
    float scale = 1.f;
    if (!(norm < 1e300)) scale = __int_as_float(0x7fc00000);
    else if (max_norm > 0.f && norm > (double)max_norm) scale = (float)((double)max_norm / (norm + 1e-6));
    out[1] = scale;
  }
}

// g *= scale[0] (clipping applied to the stored gradients, when they are read back after the step).
extern "C" __global__ void scale_inplace(float* __restrict__ g, i64 n, const float* __restrict__ scale) {
  const float s = scale[0];
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) g[i] *= s;
}

// AdamW with decoupled weight decay; the gradient is multiplied by gscale[0] (the clip scale) on the fly.
// The host checks gscale (finite) before launching, as the CPU backend refuses a step on NaN gradients.
extern "C" __global__ void adamw(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                 float* __restrict__ v, i64 n, float lr, float beta1, float beta2, float eps,
                                 float wd, float bc1, float bc2, const float* __restrict__ gscale) {
  const float s = gscale[0], ib1 = 1.f / bc1, ib2 = 1.f / bc2;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const float gi = g[i] * s;
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi * ib1) / (sqrtf(vi * ib2) + eps) + wd * p[i]);
  }
}

// dst = (T) src: the BF16 copy of the FP32 master weights the BF16 matrix products read.
extern "C" __global__ void cast_bf16(const float* __restrict__ src, bf16* __restrict__ dst, i64 n) {
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
    dst[i] = from_f<bf16>(src[i]);
}
