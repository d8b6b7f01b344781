// Rotary position embedding, Hugging Face "rotate_half" layout: pairs (j, j + d/2) of each head rotated by
// pos * theta^(-2j/d); cos/sin tables (max_pos, d/2) are computed on the host exactly as the CPU backend's
// (backend::ops::rope_tables). `inverse` rotates by the negative angle: the backward pass of a rotation.
// In place on x (rows, heads * d at row stride `stride`). Launch: grid (rows), block 128 (launch.rs).
#include "common.cuh"

template <typename T>
__device__ void rope(T* __restrict__ x, const u32* __restrict__ pos, const float* __restrict__ cos_t,
                     const float* __restrict__ sin_t, int rows, int stride, int heads, int d, int inverse) {
  const i64 r = blockIdx.x;
  if (r >= rows) return;
  const int half = d >> 1;
  const float* c = cos_t + (i64)pos[r] * half;
  const float* s = sin_t + (i64)pos[r] * half;
  const float sign = inverse ? -1.f : 1.f;
  T* row = x + r * stride;
  for (int i = threadIdx.x; i < heads * half; i += blockDim.x) {
    const int h = i / half, j = i - h * half;
    T* lo = row + h * d + j;
    T* hi = lo + half;
    const float a = to_f(*lo), b = to_f(*hi), cs = c[j], sn = sign * s[j];
    *lo = from_f<T>(a * cs - b * sn);
    *hi = from_f<T>(b * cs + a * sn);
  }
}

#define ROPE(S, T)                                                                                            \
  extern "C" __global__ void rope_##S(T* x, const u32* pos, const float* cos_t, const float* sin_t, int rows, \
                                      int stride, int heads, int d, int inverse) {                            \
    rope<T>(x, pos, cos_t, sin_t, rows, stride, heads, d, inverse);                                           \
  }
INSTANTIATE_T(ROPE)
