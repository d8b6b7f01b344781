// Token embedding. Launch: grid (n_tok), block 256 (launch.rs: rowwise).
#include "common.cuh"

// out (n_tok, hidden) = table[tok[n]] (table: FP32 master parameters, (vocab, hidden)).
template <typename T>
__device__ void embed_fwd(const float* __restrict__ table, const u32* __restrict__ tok, T* __restrict__ out,
                          int n_tok, int hidden) {
  const i64 n = blockIdx.x;
  if (n >= n_tok) return;
  const float* row = table + (i64)tok[n] * hidden;
  T* o = out + n * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = from_f<T>(row[c]);
}

#define EMBED_FWD(S, T)                                                                                      \
  extern "C" __global__ void embed_fwd_##S(const float* table, const u32* tok, T* out, int n_tok, int hidden) { \
    embed_fwd<T>(table, tok, out, n_tok, hidden);                                                            \
  }
INSTANTIATE_T(EMBED_FWD)

// dtable[tok[n]] += dout[n] for every token (FP32 atomics: repeated tokens add up). dout (n_tok, hidden).
extern "C" __global__ void embed_bwd(const float* __restrict__ dout, const u32* __restrict__ tok,
                                     float* __restrict__ dtable, int n_tok, int hidden) {
  const i64 n = blockIdx.x;
  if (n >= n_tok) return;
  float* g = dtable + (i64)tok[n] * hidden;
  const float* d = dout + n * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) atomicAdd(g + c, d[c]);
}
