// Causal grouped-query attention, tiled flash-attention style: no (T x T) score matrix is ever stored; the
// softmax is computed online per query row (running max and sum), in FP32, over T = float or bf16 inputs.
//
// Layout (as the CPU backend, kernels/src/backend/ops.rs): q (B*T, Hq*D) at row stride sq, k and v (B*T, Hkv*D)
// at strides sk, sv (strides allow a fused QKV buffer), o (B*T, Hq*D) at stride so; lse (B, Hq, T) FP32.
// Query head h reads key/value head h / (Hq / Hkv). scale = 1/sqrt(D). Head dims 16, 32, 64 and 128.
//
// attn_fwd: block = (query tile of BR = 32 rows, head, batch), 128 threads: 4 threads per query row, each
//   owning D/4 of the row's q and output accumulator in registers; key/value tiles of BC = 32 rows are staged
//   in shared memory (FP32). Scores of a tile are computed, then the tile's max rescales the accumulator once.
// attn_bwd_pre: Dv[b, h, i] = sum_d dO[i, d] * O[i, d] (FA2's row term); one warp per row.
// attn_bwd: block = (key tile of BC = 32 keys, key/value head, batch), 128 threads: 4 per key, owning D/4 of k,
//   v, dK and dV in registers; loops over the group's query heads and the query tiles at or after the key
//   tile (causal), recomputing P = exp(S - lse) from the forward's lse; dQ is reduced in shared memory per tile
//   and added to the FP32 dq buffer with atomics (dq must be zeroed first). dK, dV (FP32) are written.
//   Dynamic shared memory: launch.rs::attn_bwd_smem (over 48 KiB at D = 128: the opt-in limit is set).
// attn_decode: one new query row per sequence against the KV cache (B, Hkv, Tmax, D) with per-sequence
//   lengths (batched prompts of different lengths); block = (head, batch), 4 warps splitting the keys, merged
//   in shared memory.
#include "common.cuh"

#define BR 32
#define BC 32
#define TPR 4  // threads per row

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(FULL_MASK, v, 1);
  v += __shfl_xor_sync(FULL_MASK, v, 2);
  return v;
}

template <typename T, int D>
__device__ void attn_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         T* __restrict__ o, float* __restrict__ lse, int B, int Tn, int Hq, int Hkv, int sq, int sk,
                         int sv, int so, float scale) {
  constexpr int E = D / TPR;
  __shared__ float ks[BC][D];
  __shared__ float vs[BC][D];
  const int b = blockIdx.z, h = blockIdx.y, hk = h / (Hq / Hkv);
  const int tid = threadIdx.x, sub = tid & (TPR - 1), r = tid / TPR;
  const int qi = blockIdx.x * BR + r;
  const bool live = qi < Tn;
  const i64 base = (i64)b * Tn;
  float qr[E], acc[E];
#pragma unroll
  for (int e = 0; e < E; e++) {
    qr[e] = live ? to_f(q[(base + qi) * sq + h * D + sub + TPR * e]) * scale : 0.f;
    acc[e] = 0.f;
  }
  float m = NEG_INF, l = 0.f;
  const int last_q = min(Tn - 1, (int)blockIdx.x * BR + BR - 1);
  for (int k0 = 0; k0 <= last_q; k0 += BC) {
    __syncthreads();
    for (int idx = tid; idx < BC * D; idx += blockDim.x) {
      const int j = idx / D, d = idx - j * D, kj = k0 + j;
      ks[j][d] = kj < Tn ? to_f(k[(base + kj) * sk + hk * D + d]) : 0.f;
      vs[j][d] = kj < Tn ? to_f(v[(base + kj) * sv + hk * D + d]) : 0.f;
    }
    __syncthreads();
    float s[BC];
    float tmax = NEG_INF;
#pragma unroll
    for (int j = 0; j < BC; j++) {
      float part = 0.f;
#pragma unroll
      for (int e = 0; e < E; e++) part += qr[e] * ks[j][sub + TPR * e];
      part = quad_sum(part);
      s[j] = (live && k0 + j <= qi) ? part : NEG_INF;
      tmax = fmaxf(tmax, s[j]);
    }
    if (tmax == NEG_INF) continue;  // every key of the tile is after this row (uniform per quad)
    const float mn = fmaxf(m, tmax);
    const float corr = __expf(m - mn);
    l *= corr;
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] *= corr;
#pragma unroll
    for (int j = 0; j < BC; j++) {
      const float p = __expf(s[j] - mn);
      l += p;
#pragma unroll
      for (int e = 0; e < E; e++) acc[e] += p * vs[j][sub + TPR * e];
    }
    m = mn;
  }
  if (!live) return;
  const float inv = 1.f / l;
#pragma unroll
  for (int e = 0; e < E; e++) o[(base + qi) * so + h * D + sub + TPR * e] = from_f<T>(acc[e] * inv);
  if (sub == 0) lse[((i64)b * Hq + h) * Tn + qi] = m + logf(l);
}

template <typename T>
__device__ void attn_bwd_pre(const T* __restrict__ o, const float* __restrict__ dout, float* __restrict__ dv_row,
                             int B, int Tn, int Hq, int D, int so, int sdo) {
  const i64 w = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const i64 rows = (i64)B * Hq * Tn;
  if (w >= rows) return;
  const i64 b = w / ((i64)Hq * Tn), rem = w - b * Hq * Tn;
  const int h = (int)(rem / Tn), i = (int)(rem - (i64)h * Tn);
  const i64 row = b * Tn + i;
  float acc = 0.f;
  for (int d = lane; d < D; d += 32) acc += to_f(o[row * so + h * D + d]) * dout[row * sdo + h * D + d];
  acc = warp_sum(acc);
  if (lane == 0) dv_row[w] = acc;
}

template <typename T, int D>
__device__ void attn_bwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         const float* __restrict__ dout, const float* __restrict__ lse,
                         const float* __restrict__ dvec, float* __restrict__ dq, float* __restrict__ dk,
                         float* __restrict__ dv, int B, int Tn, int Hq, int Hkv, int sq, int sk, int sv, int sdo,
                         int sdq, int sdk, float scale) {
  constexpr int E = D / TPR;
  DYNAMIC_SHARED(float, smem);
  float(*qs)[D] = reinterpret_cast<float(*)[D]>(smem);
  float(*dos)[D] = reinterpret_cast<float(*)[D]>(smem + BR * D);
  float(*kt)[D] = reinterpret_cast<float(*)[D]>(smem + 2 * BR * D);
  float(*dss)[BC + 1] = reinterpret_cast<float(*)[BC + 1]>(smem + 2 * BR * D + BC * D);
  float* lses = smem + 2 * BR * D + BC * D + BR * (BC + 1);
  float* dvs = lses + BR;

  const int b = blockIdx.z, hk = blockIdx.y, group = Hq / Hkv;
  const int tid = threadIdx.x, sub = tid & (TPR - 1), jr = tid / TPR;
  const int k0 = blockIdx.x * BC, kj = k0 + jr;
  const bool live = kj < Tn;
  const i64 base = (i64)b * Tn;
  float kr[E], vr[E], dka[E], dva[E];
#pragma unroll
  for (int e = 0; e < E; e++) {
    kr[e] = live ? to_f(k[(base + kj) * sk + hk * D + sub + TPR * e]) : 0.f;
    vr[e] = live ? to_f(v[(base + kj) * sv + hk * D + sub + TPR * e]) : 0.f;
    dka[e] = 0.f;
    dva[e] = 0.f;
  }
  for (int idx = tid; idx < BC * D; idx += blockDim.x) {
    const int j = idx / D, d = idx - j * D;
    kt[j][d] = k0 + j < Tn ? to_f(k[(base + k0 + j) * sk + hk * D + d]) : 0.f;
  }
  for (int h = hk * group; h < (hk + 1) * group; h++) {
    for (int q0 = (k0 / BR) * BR; q0 < Tn; q0 += BR) {
      __syncthreads();
      for (int idx = tid; idx < BR * D; idx += blockDim.x) {
        const int i = idx / D, d = idx - i * D, qi = q0 + i;
        qs[i][d] = qi < Tn ? to_f(q[(base + qi) * sq + h * D + d]) : 0.f;
        dos[i][d] = qi < Tn ? dout[(base + qi) * sdo + h * D + d] : 0.f;
      }
      for (int i = tid; i < BR; i += blockDim.x) {
        const bool ok = q0 + i < Tn;
        lses[i] = ok ? lse[((i64)b * Hq + h) * Tn + q0 + i] : 0.f;
        dvs[i] = ok ? dvec[((i64)b * Hq + h) * Tn + q0 + i] : 0.f;
      }
      __syncthreads();
      for (int i = 0; i < BR; i++) {
        const int qi = q0 + i;
        float sp = 0.f, dpp = 0.f;
#pragma unroll
        for (int e = 0; e < E; e++) {
          sp += qs[i][sub + TPR * e] * kr[e];
          dpp += dos[i][sub + TPR * e] * vr[e];
        }
        sp = quad_sum(sp) * scale;
        dpp = quad_sum(dpp);
        const bool valid = live && qi < Tn && kj <= qi;
        const float p = valid ? __expf(sp - lses[i]) : 0.f;
        const float ds = p * (dpp - dvs[i]);
#pragma unroll
        for (int e = 0; e < E; e++) {
          dva[e] += p * dos[i][sub + TPR * e];
          dka[e] += ds * qs[i][sub + TPR * e];
        }
        if (sub == 0) dss[i][jr] = ds;
      }
      __syncthreads();
      for (int idx = tid; idx < BR * D; idx += blockDim.x) {
        const int i = idx / D, d = idx - i * D;
        if (q0 + i >= Tn) continue;
        float acc = 0.f;
#pragma unroll 8
        for (int j = 0; j < BC; j++) acc += dss[i][j] * kt[j][d];
        if (acc != 0.f) atomicAdd(dq + (base + q0 + i) * sdq + h * D + d, acc * scale);
      }
    }
  }
  if (!live) return;
#pragma unroll
  for (int e = 0; e < E; e++) {
    dk[(base + kj) * sdk + hk * D + sub + TPR * e] = dka[e] * scale;
    dv[(base + kj) * sdk + hk * D + sub + TPR * e] = dva[e];
  }
}

// Decode: q (B, Hq*D) one row per sequence; caches (B, Hkv, Tmax, D); lens[b] valid positions (the new token's
// K/V already appended); out (B, Hq*D).
template <typename T, int D>
__device__ void attn_decode(const T* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                            const u32* __restrict__ lens, T* __restrict__ out, int B, int Hq, int Hkv, int Tmax,
                            float scale) {
  constexpr int EPL = (D + 31) / 32;  // elements per lane
  constexpr int NW = 4;
  __shared__ float wm[NW], wl[NW], wacc[NW][D];
  const int b = blockIdx.y, h = blockIdx.x, hk = h / (Hq / Hkv);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int len = min((int)lens[b], Tmax);
  float qr[EPL], acc[EPL];
#pragma unroll
  for (int e = 0; e < EPL; e++) {
    const int d = lane + 32 * e;
    qr[e] = d < D ? to_f(q[(i64)b * Hq * D + h * D + d]) * scale : 0.f;
    acc[e] = 0.f;
  }
  float m = NEG_INF, l = 0.f;
  const T* kb = kc + (((i64)b * Hkv + hk) * Tmax) * D;
  const T* vb = vc + (((i64)b * Hkv + hk) * Tmax) * D;
  for (int j = w; j < len; j += NW) {
    float part = 0.f;
#pragma unroll
    for (int e = 0; e < EPL; e++) {
      const int d = lane + 32 * e;
      if (d < D) part += qr[e] * to_f(kb[(i64)j * D + d]);
    }
    const float s = warp_sum(part);
    const float mn = fmaxf(m, s);
    const float corr = __expf(m - mn), p = __expf(s - mn);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < EPL; e++) {
      const int d = lane + 32 * e;
      acc[e] = acc[e] * corr + (d < D ? p * to_f(vb[(i64)j * D + d]) : 0.f);
    }
    m = mn;
  }
  if (lane == 0) {
    wm[w] = m;
    wl[w] = l;
  }
#pragma unroll
  for (int e = 0; e < EPL; e++) {
    const int d = lane + 32 * e;
    if (d < D) wacc[w][d] = acc[e];
  }
  __syncthreads();
  if (w != 0) return;
  float gm = NEG_INF;
  for (int i = 0; i < NW; i++) gm = fmaxf(gm, wm[i]);
  float gl = 0.f;
  for (int i = 0; i < NW; i++) gl += wm[i] == NEG_INF ? 0.f : wl[i] * __expf(wm[i] - gm);
#pragma unroll
  for (int e = 0; e < EPL; e++) {
    const int d = lane + 32 * e;
    if (d >= D) continue;
    float a = 0.f;
    for (int i = 0; i < NW; i++) a += wm[i] == NEG_INF ? 0.f : wacc[i][d] * __expf(wm[i] - gm);
    out[(i64)b * Hq * D + h * D + d] = from_f<T>(gl > 0.f ? a / gl : 0.f);
  }
}

#define ATTN_D(S, T, DD)                                                                                           \
  extern "C" __global__ void __launch_bounds__(128) attn_fwd_##S##_d##DD(                                          \
      const T* q, const T* k, const T* v, T* o, float* lse, int B, int Tn, int Hq, int Hkv, int sq, int sk,        \
      int sv, int so, float scale) {                                                                               \
    attn_fwd<T, DD>(q, k, v, o, lse, B, Tn, Hq, Hkv, sq, sk, sv, so, scale);                                      \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128) attn_bwd_##S##_d##DD(                                          \
      const T* q, const T* k, const T* v, const float* dout, const float* lse, const float* dvec, float* dq,        \
      float* dk, float* dv, int B, int Tn, int Hq, int Hkv, int sq, int sk, int sv, int sdo, int sdq, int sdk,     \
      float scale) {                                                                                               \
    attn_bwd<T, DD>(q, k, v, dout, lse, dvec, dq, dk, dv, B, Tn, Hq, Hkv, sq, sk, sv, sdo, sdq, sdk, scale);       \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128) attn_decode_##S##_d##DD(                                       \
      const T* q, const T* kc, const T* vc, const u32* lens, T* out, int B, int Hq, int Hkv, int Tmax,             \
      float scale) {                                                                                               \
    attn_decode<T, DD>(q, kc, vc, lens, out, B, Hq, Hkv, Tmax, scale);                                            \
  }

#define ATTN(S, T)                                                                                                 \
  ATTN_D(S, T, 16)                                                                                                 \
  ATTN_D(S, T, 32)                                                                                                 \
  ATTN_D(S, T, 64)                                                                                                 \
  ATTN_D(S, T, 128)                                                                                                \
  extern "C" __global__ void attn_bwd_pre_##S(const T* o, const float* dout, float* dv_row, int B, int Tn, int Hq, \
                                              int D, int so, int sdo) {                                            \
    attn_bwd_pre<T>(o, dout, dv_row, B, Tn, Hq, D, so, sdo);                                                       \
  }
INSTANTIATE_T(ATTN)
