// Shared helpers of Spark's CUDA kernels (compiled with NVRTC: no system headers, so the few things needed are
// defined here). Conventions for every kernel:
// - tensors are row-major, rows = tokens (batch * seq), like the CPU backend (kernels/src/backend/ops.rs);
// - activations are `T` = float (FP32/TF32 parity mode) or bf16 (speed mode); parameters (FP32 master copy),
//   gradients, statistics and every accumulation are FP32;
// - each kernel is instantiated as `<name>_f32` and, where activations are read, `<name>_bf16`;
// - launch shapes come from kernels/src/cuda/launch.rs, which states and checks each kernel's assumptions.
#pragma once

typedef long long i64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define NEG_INF __int_as_float(0xff800000)
#define FULL_MASK 0xffffffffu

// bfloat16 as raw bits (NVRTC needs no cuda_bf16.h this way); converted with round-to-nearest-even.
struct __align__(2) bf16 {
  u16 bits;
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __uint_as_float(((u32)x.bits) << 16); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) {
  u32 u = __float_as_uint(x);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a (quiet) NaN
    r.bits = (u16)((u >> 16) | 0x40u);
    return r;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  r.bits = (u16)(u >> 16);
  return r;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `scratch` is
// 32 floats of shared memory; the leading __syncthreads makes back-to-back calls with one scratch safe.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[w] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[w] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : NEG_INF;
  return warp_max(v);
}

// Online-softmax state (running max m, running sum s of exp(x - m)) and its merge.
struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum ms_push(MaxSum a, float x) {
  if (x > a.m) {
    a.s = a.s * __expf(a.m - x) + 1.f;
    a.m = x;
  } else {
    a.s += __expf(x - a.m);
  }
  return a;
}
__device__ __forceinline__ MaxSum ms_merge(MaxSum a, MaxSum b) {
  if (b.m == NEG_INF) return a;
  if (a.m == NEG_INF) return b;
  float m = fmaxf(a.m, b.m);
  MaxSum r;
  r.m = m;
  r.s = a.s * __expf(a.m - m) + b.s * __expf(b.m - m);
  return r;
}
__device__ __forceinline__ MaxSum block_maxsum(MaxSum v, float* scratch_m, float* scratch_s) {
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum w;
    w.m = __shfl_xor_sync(FULL_MASK, v.m, o);
    w.s = __shfl_xor_sync(FULL_MASK, v.s, o);
    v = ms_merge(v, w);
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    scratch_m[w] = v.m;
    scratch_s[w] = v.s;
  }
  __syncthreads();
  MaxSum r;
  r.m = lane < nw ? scratch_m[lane] : NEG_INF;
  r.s = lane < nw ? scratch_s[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum q;
    q.m = __shfl_xor_sync(FULL_MASK, r.m, o);
    q.s = __shfl_xor_sync(FULL_MASK, r.s, o);
    r = ms_merge(r, q);
  }
  return r;
}

// Counter-based random numbers (SplitMix64 finaliser of seed, stream and counter): a uniform in [0, 1).
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ float uniform01(unsigned long long seed, unsigned long long stream, unsigned long long counter) {
  unsigned long long z = mix64(seed + 0x9e3779b97f4a7c15ull * (stream + 1) + mix64(counter));
  return (float)(z >> 40) * (1.0f / 16777216.0f);  // 24 random bits
}

// Dynamic shared memory (emu/cuda_emu.h defines its own, for the CPU emulation of the execution model).
#ifndef SPARK_EMULATION
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

#define INSTANTIATE_T(MACRO) \
  MACRO(f32, float)          \
  MACRO(bf16, bf16)
