// Fused log-softmax / cross-entropy / per-token log-prob over the vocabulary, without materialising the
// softmax: one block per row (block 1024; launch.rs), one pass with an online max/sum.
//
// logprob_fwd: for each row r with a target (tgt[r] < vocab): lse[r] = logsumexp(logits[r]) and
//   logp[r] = logits[r, tgt[r]] - lse[r]. Rows with tgt[r] = 0xffffffff (padding, prompts) get lse only.
// logprob_bwd: dlogits[r, v] = coef[r] * ([v == tgt[r]] - softmax(logits[r])_v), where coef[r] = dL/dlogp[r]
//   (from the loss kernel; 0 for rows without a target). SFT's cross-entropy is coef = -1/tokens.
//   dlogits may alias logits (in place: each element is read before it is written, by the same thread).
#include "common.cuh"

#define NO_TARGET 0xffffffffu

template <typename T>
__device__ void logprob_fwd(const T* __restrict__ logits, const u32* __restrict__ tgt, float* __restrict__ lse,
                            float* __restrict__ logp, int rows, int vocab) {
  __shared__ float sm[32], ss[32];
  const i64 r = blockIdx.x;
  if (r >= rows) return;
  const T* row = logits + r * vocab;
  MaxSum a;
  a.m = NEG_INF;
  a.s = 0.f;
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) a = ms_push(a, to_f(row[v]));
  a = block_maxsum(a, sm, ss);
  const float l = a.m + logf(a.s);
  if (threadIdx.x == 0) {
    lse[r] = l;
    const u32 t = tgt[r];
    if (logp) logp[r] = t < (u32)vocab ? to_f(row[t]) - l : 0.f;
  }
}

template <typename T>
__device__ void logprob_bwd(const T* logits, const u32* __restrict__ tgt, const float* __restrict__ lse,
                            const float* __restrict__ coef, T* dlogits, int rows, int vocab) {
  const i64 r = blockIdx.x;
  if (r >= rows) return;
  const T* row = logits + r * vocab;
  T* drow = dlogits + r * vocab;
  const float c = coef[r], l = lse[r];
  const u32 t = tgt[r];
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float p = __expf(to_f(row[v]) - l);
    drow[v] = from_f<T>(c * (((u32)v == t ? 1.f : 0.f) - p));
  }
}

#define XENT(S, T)                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) logprob_fwd_##S(const T* logits, const u32* tgt, float* lse, float* logp, int rows, \
                                             int vocab) {                                                       \
    logprob_fwd<T>(logits, tgt, lse, logp, rows, vocab);                                                        \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(1024) logprob_bwd_##S(const T* logits, const u32* tgt, const float* lse,                 \
                                             const float* coef, T* dlogits, int rows, int vocab) {              \
    logprob_bwd<T>(logits, tgt, lse, coef, dlogits, rows, vocab);                                               \
  }
INSTANTIATE_T(XENT)
