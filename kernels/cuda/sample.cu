// Sampling helpers: the KV cache of a batch of prompts of different lengths, and choosing the next token.
//
// kv_append: rows of new keys/values (n rows of (Hkv*D) at strides sk, sv: a packed prefill of every prompt, or
//   one decode row per sequence) go to cache[seq[r], :, pos[r], :] of the caches (B, Hkv, Tmax, D).
//   Launch: grid (n), block 128.
// kv_gather: dst[i] = src[idx[i]] for whole sequences (compacting the batch when sequences finish).
//   Launch: grid (n_dst, Hkv), block 128.
// sample_rows: one block (1024 threads) per sequence: with temperature t > 0, softmax(logits / t) restricted to
//   the nucleus (the smallest set of most likely tokens whose mass reaches top_p; found by bisecting the
//   probability threshold, 32 rounds, no sort), then a draw with a counter-based uniform (seed, sequence,
//   step); t = 0 is greedy (lowest id among equal maxima). Writes the token, its log-prob under the
//   untempered model (log_softmax(logits)[token], as the CPU sampler reports), and finished[b] = 1 when the
//   token is a stop token or the sequence reached its length limit. Finished sequences are skipped.
#include "common.cuh"

template <typename T>
__device__ void kv_append(const T* __restrict__ k, const T* __restrict__ v, const u32* __restrict__ seq,
                          const u32* __restrict__ pos, T* __restrict__ kc, T* __restrict__ vc, int n, int Hkv, int D,
                          int Tmax, int sk, int sv) {
  const i64 r = blockIdx.x;
  if (r >= n) return;
  const i64 b = seq[r], p = pos[r];
  if (p >= Tmax) return;  // the host checks lengths; never write outside the cache
  for (int idx = threadIdx.x; idx < Hkv * D; idx += blockDim.x) {
    const int h = idx / D, d = idx - h * D;
    const i64 at = ((b * Hkv + h) * Tmax + p) * D + d;
    kc[at] = k[r * sk + idx];
    vc[at] = v[r * sv + idx];
  }
}

template <typename T>
__device__ void kv_gather(const T* __restrict__ src, T* __restrict__ dst, const u32* __restrict__ idx, int n_dst,
                          int Hkv, int D, int Tmax, const u32* __restrict__ lens) {
  const int i = blockIdx.x, h = blockIdx.y;
  if (i >= n_dst) return;
  const i64 from = ((i64)idx[i] * Hkv + h) * Tmax * D, to = ((i64)i * Hkv + h) * Tmax * D;
  const i64 n = (i64)min((int)lens[idx[i]], Tmax) * D;  // only the valid positions
  for (i64 e = threadIdx.x; e < n; e += blockDim.x) dst[to + e] = src[from + e];
}

template <typename T>
__device__ void sample_rows(const T* __restrict__ logits, int B, int vocab, float temperature, float top_p,
                            unsigned long long seed, u32 step, const u32* __restrict__ stop, int n_stop,
                            const u32* __restrict__ lens, u32 max_len, u32* __restrict__ token,
                            float* __restrict__ logprob, u8* __restrict__ finished) {
  __shared__ float sm[32], ss[32];
  __shared__ float s_val[32];
  __shared__ u32 s_idx[32];
  const int b = blockIdx.x;
  if (b >= B || finished[b]) return;
  const T* row = logits + (i64)b * vocab;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, nw = blockDim.x >> 5;

  // untempered log-softmax normaliser (for the reported log-prob) and the argmax
  MaxSum a;
  a.m = NEG_INF;
  a.s = 0.f;
  float best = NEG_INF;
  u32 besti = 0xffffffffu;
  for (int v = tid; v < vocab; v += blockDim.x) {
    const float x = to_f(row[v]);
    a = ms_push(a, x);
    if (x > best) {
      best = x;
      besti = v;
    }
  }
  a = block_maxsum(a, sm, ss);
  const float lse = a.m + logf(a.s);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(FULL_MASK, best, o);
    const u32 oi = __shfl_xor_sync(FULL_MASK, besti, o);
    if (ov > best || (ov == best && oi < besti)) {
      best = ov;
      besti = oi;
    }
  }
  if (lane == 0) {
    s_val[w] = best;
    s_idx[w] = besti;
  }
  __syncthreads();
  if (w == 0) {
    best = lane < nw ? s_val[lane] : NEG_INF;
    besti = lane < nw ? s_idx[lane] : 0xffffffffu;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(FULL_MASK, best, o);
      const u32 oi = __shfl_xor_sync(FULL_MASK, besti, o);
      if (ov > best || (ov == best && oi < besti)) {
        best = ov;
        besti = oi;
      }
    }
    if (lane == 0) s_idx[0] = besti;
  }
  __syncthreads();
  u32 chosen = s_idx[0];

  if (temperature > 0.f) {
    const float inv_t = 1.f / temperature;
    const float mt = a.m * inv_t;  // max of the tempered logits (temperature > 0 keeps the order)
    float z = 0.f;
    for (int v = tid; v < vocab; v += blockDim.x) z += __expf(to_f(row[v]) * inv_t - mt);
    z = block_sum(z, sm);
    // nucleus threshold: the largest probability level `lo` with mass(p >= lo) >= top_p
    float lo = 0.f, hi = 1.f;
    if (top_p < 1.f) {
      for (int it = 0; it < 32; it++) {
        const float mid = 0.5f * (lo + hi);
        float mass = 0.f;
        for (int v = tid; v < vocab; v += blockDim.x) {
          const float p = __expf(to_f(row[v]) * inv_t - mt) / z;
          if (p >= mid) mass += p;
        }
        mass = block_sum(mass, sm);
        if (mass >= top_p) lo = mid;
        else hi = mid;
      }
    }
    // mass of the nucleus, then the draw: walk the vocabulary in id order, chunk by chunk (a block-wide scan)
    float kept = 0.f;
    for (int v = tid; v < vocab; v += blockDim.x) {
      const float p = __expf(to_f(row[v]) * inv_t - mt) / z;
      if (p >= lo) kept += p;
    }
    kept = block_sum(kept, sm);
    const float target = uniform01(seed, (unsigned long long)b, step) * kept;
    float before = 0.f;
    u32 pick = 0xffffffffu;
    for (int v0 = 0; v0 < vocab && pick == 0xffffffffu; v0 += blockDim.x) {
      const int v = v0 + tid;
      float p = 0.f;
      if (v < vocab) {
        p = __expf(to_f(row[v]) * inv_t - mt) / z;
        if (p < lo) p = 0.f;
      }
      // inclusive prefix sum over the block: warp scan, then the warps' totals
      float x = p;
      for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(FULL_MASK, x, o);
        if (lane >= o) x += y;
      }
      __syncthreads();
      if (lane == 31) s_val[w] = x;
      __syncthreads();
      float off = 0.f;
      for (int i = 0; i < w; i++) off += s_val[i];
      float chunk_total = 0.f;
      for (int i = 0; i < nw; i++) chunk_total += s_val[i];
      const float incl = before + off + x;
      __syncthreads();
      if (tid == 0) s_idx[0] = 0xffffffffu;
      __syncthreads();
      if (p > 0.f && incl >= target && incl - p < target) atomicMin(&s_idx[0], (u32)v);
      __syncthreads();
      pick = s_idx[0];
      before += chunk_total;
    }
    // rounding can leave the target just above the last kept token: take the most likely one then
    chosen = pick != 0xffffffffu ? pick : chosen;
  }
  if (tid == 0) {
    token[b] = chosen;
    logprob[b] = to_f(row[chosen]) - lse;
    bool done = lens[b] + 1 >= max_len;
    for (int i = 0; i < n_stop; i++) done = done || stop[i] == chosen;
    finished[b] = done ? 1 : 0;
  }
}

#define SAMPLE(S, T)                                                                                            \
  extern "C" __global__ void kv_append_##S(const T* k, const T* v, const u32* seq, const u32* pos, T* kc, T* vc, \
                                           int n, int Hkv, int D, int Tmax, int sk, int sv) {                   \
    kv_append<T>(k, v, seq, pos, kc, vc, n, Hkv, D, Tmax, sk, sv);                                             \
  }                                                                                                             \
  extern "C" __global__ void kv_gather_##S(const T* src, T* dst, const u32* idx, int n_dst, int Hkv, int D,     \
                                           int Tmax, const u32* lens) {                                         \
    kv_gather<T>(src, dst, idx, n_dst, Hkv, D, Tmax, lens);                                                     \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(1024) sample_rows_##S(                                           \
      const T* logits, int B, int vocab, float temperature, float top_p, unsigned long long seed, u32 step,     \
      const u32* stop, int n_stop, const u32* lens, u32 max_len, u32* token, float* logprob, u8* finished) {    \
    sample_rows<T>(logits, B, vocab, temperature, top_p, seed, step, stop, n_stop, lens, max_len, token,        \
                   logprob, finished);                                                                          \
  }
INSTANTIATE_T(SAMPLE)
