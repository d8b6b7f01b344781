// Per-token loss and dL/dlogp for SFT and GRPO (PPO-clip + k3 KL), as kernels/src/model/loss.rs::token_loss:
//   rho = exp(clamp(logp - old, +-20)), pg = -min(rho * A, clip(rho, 1 - eps, 1 + eps) * A),
//   delta = clamp(logp - ref, +-20), k3 = exp(-delta) - 1 + delta, loss = pg + beta * k3,
//   dloss/dlogp = (clipped ? 0 : -rho * A) + beta * (1 - exp(-delta)); SFT: loss = -logp, d = -1.
// Each token's result is scaled by weight[i] (1 / tokens of the step: the token-level mean). Outputs: coef[i]
// (dL/dlogp, fed to logprob_bwd) and sums[0..3] += (loss, kl, clipped count) by one atomicAdd per block.
// Launch: 1-D, block 256, grid ceil(n / 256) (launch.rs).
#include "common.cuh"

#define LOG_RATIO_CLAMP 20.f

extern "C" __global__ void grpo_loss(const float* __restrict__ logp, const float* __restrict__ old_logp,
                                     const float* __restrict__ ref_logp, const float* __restrict__ adv,
                                     const float* __restrict__ weight, float* __restrict__ coef,
                                     float* __restrict__ sums, int n, float clip_eps, float kl_coef) {
  __shared__ float scratch[32];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float loss = 0.f, kl = 0.f, clipped = 0.f;
  if (i < n) {
    const float lp = logp[i], a = adv[i], w = weight[i];
    const float rho = __expf(fminf(fmaxf(lp - old_logp[i], -LOG_RATIO_CLAMP), LOG_RATIO_CLAMP));
    const float s1 = rho * a;
    const float s2 = fminf(fmaxf(rho, 1.f - clip_eps), 1.f + clip_eps) * a;
    const bool c = s2 < s1;
    float d = c ? 0.f : -rho * a;
    float l = -fminf(s1, s2);
    if (ref_logp) {
      const float delta = fminf(fmaxf(lp - ref_logp[i], -LOG_RATIO_CLAMP), LOG_RATIO_CLAMP);
      const float e = __expf(-delta);
      const float k3 = e - 1.f + delta;
      l += kl_coef * k3;
      d += kl_coef * (1.f - e);
      kl = w * k3;
    }
    coef[i] = w * d;
    loss = w * l;
    clipped = c ? 1.f : 0.f;
  }
  loss = block_sum(loss, scratch);
  kl = block_sum(kl, scratch);
  clipped = block_sum(clipped, scratch);
  if (threadIdx.x == 0) {
    atomicAdd(sums, loss);
    atomicAdd(sums + 1, kl);
    atomicAdd(sums + 2, clipped);
  }
}

extern "C" __global__ void sft_loss(const float* __restrict__ logp, const float* __restrict__ weight,
                                    float* __restrict__ coef, float* __restrict__ sums, int n) {
  __shared__ float scratch[32];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float loss = 0.f;
  if (i < n) {
    coef[i] = -weight[i];
    loss = -weight[i] * logp[i];
  }
  loss = block_sum(loss, scratch);
  if (threadIdx.x == 0) atomicAdd(sums, loss);
}
