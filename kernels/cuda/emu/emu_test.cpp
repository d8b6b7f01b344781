// Runs Spark's CUDA kernels (kernels/cuda/*.cu, unchanged) on the CPU emulation of cuda_emu.h against naive
// double-precision references, on small random shapes chosen to hit the edges: sequence lengths that are not
// multiples of the 32-row tiles, GQA groups, rows without targets, KV caches of different lengths, ties.
// Prints one line per check and "N passed, M failed"; exits 1 on a failure. Built and run by run.sh.
#include "cuda_emu.h"

#include "../attention.cu"
#include "../embed.cu"
#include "../loss.cu"
#include "../optim.cu"
#include "../rmsnorm.cu"
#include "../rope.cu"
#include "../sample.cu"
#include "../swiglu.cu"
#include "../xent.cu"

#include <cstdio>
#include <string>

static int passed = 0, failed = 0;

struct Rng {
  std::uint64_t s;
  float next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (float)((s * 0x2545f4914f6cdd1dull) >> 40) / 16777216.f;
  }
  std::vector<float> f(std::size_t n, float a) {
    std::vector<float> v(n);
    for (auto& x : v) x = (next() * 2.f - 1.f) * a;
    return v;
  }
};

// max |got - want| / max(1, max |want|) <= tol
static void check(const std::string& what, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  double scale = 1.0, err = got.size() == want.size() ? 0.0 : INFINITY;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < got.size() && i < want.size(); i++) {
    const double d = std::fabs((double)got[i] - want[i]);
    err = std::isnan(d) ? INFINITY : std::max(err, d);
  }
  err /= scale;
  const bool ok = err <= tol;
  std::printf("%-4s %-58s error %.2e (tolerance %.0e)\n", ok ? "ok" : "FAIL", what.c_str(), err, tol);
  (ok ? passed : failed)++;
}

static std::vector<double> dbl(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

struct AttnRef {
  std::vector<double> o, lse, dq, dk, dv;
};

// Naive causal GQA attention in double on fused qkv rows (B*T, (Hq + 2 Hkv) * D): output, log-sum-exp, and the
// gradients of q, k, v for dout.
static AttnRef attn_ref(const std::vector<float>& qkv, const std::vector<float>& dout, int B, int T, int Hq, int Hkv,
                        int D) {
  const int W = (Hq + 2 * Hkv) * D, N = B * T, HD = Hq * D, group = Hq / Hkv;
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<double> ro((std::size_t)N * HD), rl((std::size_t)B * Hq * T), rdq((std::size_t)N * HD, 0.0),
      rdk((std::size_t)N * Hkv * D, 0.0), rdv((std::size_t)N * Hkv * D, 0.0);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < Hq; h++) {
      const int hk = h / group;
      auto Q = [&](int i, int d) { return (double)qkv[((std::size_t)b * T + i) * W + h * D + d]; };
      auto K = [&](int j, int d) { return (double)qkv[((std::size_t)b * T + j) * W + HD + hk * D + d]; };
      auto V = [&](int j, int d) { return (double)qkv[((std::size_t)b * T + j) * W + HD + Hkv * D + hk * D + d]; };
      for (int i = 0; i < T; i++) {
        std::vector<double> p(i + 1);
        double m = -INFINITY, s = 0;
        for (int j = 0; j <= i; j++) {
          double x = 0;
          for (int d = 0; d < D; d++) x += Q(i, d) * K(j, d);
          p[j] = x * scale;
          m = std::max(m, p[j]);
        }
        for (int j = 0; j <= i; j++) s += (p[j] = std::exp(p[j] - m));
        for (int j = 0; j <= i; j++) p[j] /= s;
        rl[((std::size_t)b * Hq + h) * T + i] = m + std::log(s);
        std::vector<double> dp(i + 1);
        double dsum = 0;
        for (int d = 0; d < D; d++) {
          double acc = 0;
          for (int j = 0; j <= i; j++) acc += p[j] * V(j, d);
          ro[((std::size_t)b * T + i) * HD + h * D + d] = acc;
        }
        for (int j = 0; j <= i; j++) {
          double x = 0;
          for (int d = 0; d < D; d++) x += dout[((std::size_t)b * T + i) * HD + h * D + d] * V(j, d);
          dp[j] = x;
          dsum += p[j] * x;
        }
        for (int j = 0; j <= i; j++) {
          const double ds = p[j] * (dp[j] - dsum) * scale;
          for (int d = 0; d < D; d++) {
            rdq[((std::size_t)b * T + i) * HD + h * D + d] += ds * K(j, d);
            rdk[((std::size_t)b * T + j) * Hkv * D + hk * D + d] += ds * Q(i, d);
            rdv[((std::size_t)b * T + j) * Hkv * D + hk * D + d] += p[j] * dout[((std::size_t)b * T + i) * HD + h * D + d];
          }
        }
      }
    }
  return AttnRef{ro, rl, rdq, rdk, rdv};
}

// ---- attention: naive causal GQA in double, forward and backward ----
static void attention(int B, int T, int Hq, int Hkv, int D) {
  Rng r{0x1234u + (unsigned)D};
  const int W = (Hq + 2 * Hkv) * D, N = B * T, HD = Hq * D;
  auto qkv = r.f((std::size_t)N * W, 1.f), dout = r.f((std::size_t)N * HD, 1.f);
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<float> o((std::size_t)N * HD), lse((std::size_t)B * Hq * T), dvec((std::size_t)B * Hq * T);
  std::vector<float> dq((std::size_t)N * HD, 0.f), dk((std::size_t)N * Hkv * D), dv((std::size_t)N * Hkv * D);
  const float* q = qkv.data();
  const float* k = qkv.data() + HD;
  const float* v = qkv.data() + HD + Hkv * D;
  dim3 g{(unsigned)((T + 31) / 32), (unsigned)Hq, (unsigned)B}, blk{128};
  auto fwd = D == 16 ? attn_fwd_f32_d16 : D == 32 ? attn_fwd_f32_d32 : D == 64 ? attn_fwd_f32_d64 : attn_fwd_f32_d128;
  auto bwd = D == 16 ? attn_bwd_f32_d16 : D == 32 ? attn_bwd_f32_d32 : D == 64 ? attn_bwd_f32_d64 : attn_bwd_f32_d128;
  emu::launch(g, blk, 0, [&] { fwd(q, k, v, o.data(), lse.data(), B, T, Hq, Hkv, W, W, W, HD, scale); });
  emu::launch(dim3{(unsigned)((B * Hq * T + 7) / 8)}, dim3{256}, 0,
              [&] { attn_bwd_pre_f32(o.data(), dout.data(), dvec.data(), B, T, Hq, D, HD, HD); });
  const std::size_t smem = (2 * 32 * D + 32 * D + 32 * 33 + 64) * 4;
  emu::launch(dim3{(unsigned)((T + 31) / 32), (unsigned)Hkv, (unsigned)B}, blk, smem, [&] {
    bwd(q, k, v, dout.data(), lse.data(), dvec.data(), dq.data(), dk.data(), dv.data(), B, T, Hq, Hkv, W, W, W, HD, HD,
        Hkv * D, scale);
  });
  AttnRef R = attn_ref(qkv, dout, B, T, Hq, Hkv, D);
  auto &ro = R.o, &rl = R.lse, &rdq = R.dq, &rdk = R.dk, &rdv = R.dv;
  const std::string tag = " B" + std::to_string(B) + " T" + std::to_string(T) + " " + std::to_string(Hq) + ":" +
                          std::to_string(Hkv) + " d" + std::to_string(D);
  check("attn_fwd out" + tag, o, ro, 1e-5);
  check("attn_fwd lse" + tag, lse, rl, 1e-5);
  check("attn_bwd dq" + tag, dq, rdq, 1e-5);
  check("attn_bwd dk" + tag, dk, rdk, 1e-5);
  check("attn_bwd dv" + tag, dv, rdv, 1e-5);

  // KV cache: append every row, decode the last query of each sequence at lengths T, T - 9, ...
  const int Tmax = T + 5;
  std::vector<float> kc((std::size_t)B * Hkv * Tmax * D, 0.f), vc(kc.size(), 0.f);
  std::vector<u32> seq(N), pos(N), lens(B);
  for (int i = 0; i < N; i++) seq[i] = i / T, pos[i] = i % T;
  for (int b = 0; b < B; b++) lens[b] = T - 9 * b;
  emu::launch(dim3{(unsigned)N}, dim3{128}, 0, [&] {
    kv_append_f32(k, v, seq.data(), pos.data(), kc.data(), vc.data(), N, Hkv, D, Tmax, W, W);
  });
  std::vector<float> q1((std::size_t)B * HD), o1((std::size_t)B * HD);
  std::vector<double> want((std::size_t)B * HD);
  for (int b = 0; b < B; b++)
    for (int c = 0; c < HD; c++) {
      q1[(std::size_t)b * HD + c] = qkv[((std::size_t)b * T + lens[b] - 1) * W + c];
      want[(std::size_t)b * HD + c] = ro[((std::size_t)b * T + lens[b] - 1) * HD + c];
    }
  auto dec = D == 16 ? attn_decode_f32_d16 : D == 32 ? attn_decode_f32_d32 : D == 64 ? attn_decode_f32_d64 : attn_decode_f32_d128;
  emu::launch(dim3{(unsigned)Hq, (unsigned)B}, dim3{128}, 0,
              [&] { dec(q1.data(), kc.data(), vc.data(), lens.data(), o1.data(), B, Hq, Hkv, Tmax, scale); });
  check("kv_append + attn_decode (different lengths)" + tag, o1, want, 1e-5);
}

// The BF16 instances: inputs rounded to BF16 (the reference sees the same rounded values), FP32 inside; the
// output is stored in BF16 (2^-8 relative), and the backward reads that rounded output.
static void attention_bf16(int B, int T, int Hq, int Hkv) {
  const int D = 64;
  Rng r{0xbf16};
  const int W = (Hq + 2 * Hkv) * D, N = B * T, HD = Hq * D;
  auto qkv = r.f((std::size_t)N * W, 1.f), dout = r.f((std::size_t)N * HD, 1.f);
  std::vector<bf16> h(qkv.size());
  for (std::size_t i = 0; i < qkv.size(); i++) h[i] = from_f<bf16>(qkv[i]), qkv[i] = to_f(h[i]);
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<bf16> o((std::size_t)N * HD);
  std::vector<float> lse((std::size_t)B * Hq * T), dvec(lse.size()), dq((std::size_t)N * HD, 0.f),
      dk((std::size_t)N * Hkv * D), dv(dk.size());
  const bf16 *q = h.data(), *k = h.data() + HD, *v = h.data() + HD + Hkv * D;
  emu::launch(dim3{(unsigned)((T + 31) / 32), (unsigned)Hq, (unsigned)B}, dim3{128}, 0,
              [&] { attn_fwd_bf16_d64(q, k, v, o.data(), lse.data(), B, T, Hq, Hkv, W, W, W, HD, scale); });
  emu::launch(dim3{(unsigned)((B * Hq * T + 7) / 8)}, dim3{256}, 0,
              [&] { attn_bwd_pre_bf16(o.data(), dout.data(), dvec.data(), B, T, Hq, D, HD, HD); });
  emu::launch(dim3{(unsigned)((T + 31) / 32), (unsigned)Hkv, (unsigned)B}, dim3{128}, (2 * 32 * D + 32 * D + 32 * 33 + 64) * 4, [&] {
    attn_bwd_bf16_d64(q, k, v, dout.data(), lse.data(), dvec.data(), dq.data(), dk.data(), dv.data(), B, T, Hq, Hkv, W, W,
                      W, HD, HD, Hkv * D, scale);
  });
  AttnRef R = attn_ref(qkv, dout, B, T, Hq, Hkv, D);
  std::vector<float> of(o.size());
  for (std::size_t i = 0; i < o.size(); i++) of[i] = to_f(o[i]);
  check("attn_fwd bf16 out (stored in BF16) d64", of, R.o, 4e-3);
  check("attn_fwd bf16 lse d64", lse, R.lse, 1e-5);
  check("attn_bwd bf16 dq d64", dq, R.dq, 5e-3);
  check("attn_bwd bf16 dk d64", dk, R.dk, 5e-3);
  check("attn_bwd bf16 dv d64", dv, R.dv, 5e-3);
}

int main() {
  Rng r{42};
  // attention: tails of the 32-row tiles, GQA 2:1 and 4:1, MHA, every head dim
  attention(2, 37, 4, 2, 16);
  attention(1, 70, 4, 1, 32);
  attention(2, 33, 2, 2, 64);
  attention(1, 40, 2, 1, 128);
  attention_bf16(2, 45, 4, 2);

  // RMSNorm
  {
    const int R = 5, C = 96;
    auto x = r.f(R * C, 2.f), w = r.f(C, 1.f), dy = r.f(R * C, 1.f), dx = r.f(R * C, 0.5f), dw = r.f(C, 0.5f);
    std::vector<float> y(R * C), rs(R);
    emu::launch(dim3{R}, dim3{128}, 0, [&] { rmsnorm_fwd_f32(x.data(), w.data(), y.data(), rs.data(), R, C, 1e-6f); });
    std::vector<double> ry(R * C), rdx(dx.begin(), dx.end()), rdw(dw.begin(), dw.end());
    for (int i = 0; i < R; i++) {
      double ss = 0, dot = 0;
      for (int c = 0; c < C; c++) ss += (double)x[i * C + c] * x[i * C + c];
      const double s = 1.0 / std::sqrt(ss / C + 1e-6);
      for (int c = 0; c < C; c++) dot += (double)dy[i * C + c] * w[c] * x[i * C + c];
      for (int c = 0; c < C; c++) {
        ry[i * C + c] = x[i * C + c] * s * w[c];
        rdx[i * C + c] += s * w[c] * dy[i * C + c] - x[i * C + c] * s * s * s * dot / C;
        rdw[c] += (double)dy[i * C + c] * x[i * C + c] * s;
      }
    }
    check("rmsnorm_fwd", y, ry, 1e-6);
    emu::launch(dim3{R}, dim3{128}, 0, [&] { rmsnorm_bwd_dx_f32(x.data(), w.data(), dy.data(), rs.data(), dx.data(), R, C, 1); });
    emu::launch(dim3{(C + 31) / 32}, dim3{32, 8}, 0, [&] { rmsnorm_bwd_dw_f32(x.data(), dy.data(), rs.data(), dw.data(), R, C); });
    check("rmsnorm_bwd dx (accumulated)", dx, rdx, 1e-6);
    check("rmsnorm_bwd dw (accumulated)", dw, rdw, 1e-6);
  }

  // RoPE: against the formula, and the inverse undoes it
  {
    const int R = 7, H = 3, D = 16, half = D / 2, S = H * D + 5;
    auto x = r.f(R * S, 1.f), x0 = x;
    std::vector<float> cs(R * half), sn(R * half);
    std::vector<u32> pos(R);
    for (int p = 0; p < R; p++) {
      pos[p] = (p * 3) % R;
      for (int j = 0; j < half; j++) {
        const double a = p * std::pow(10000.0, -2.0 * j / D);
        cs[p * half + j] = (float)std::cos(a), sn[p * half + j] = (float)std::sin(a);
      }
    }
    emu::launch(dim3{R}, dim3{128}, 0, [&] { rope_f32(x.data(), pos.data(), cs.data(), sn.data(), R, S, H, D, 0); });
    std::vector<double> want(x0.begin(), x0.end());
    for (int i = 0; i < R; i++)
      for (int h = 0; h < H; h++)
        for (int j = 0; j < half; j++) {
          const double a = x0[i * S + h * D + j], b = x0[i * S + h * D + j + half];
          const double c = cs[pos[i] * half + j], s = sn[pos[i] * half + j];
          want[i * S + h * D + j] = a * c - b * s;
          want[i * S + h * D + j + half] = b * c + a * s;
        }
    check("rope", x, want, 1e-6);
    emu::launch(dim3{R}, dim3{128}, 0, [&] { rope_f32(x.data(), pos.data(), cs.data(), sn.data(), R, S, H, D, 1); });
    check("rope inverse restores the input", x, dbl(x0), 1e-6);
  }

  // SwiGLU over [gate | up] rows
  {
    const int R = 9, I = 40;
    auto gu = r.f(R * 2 * I, 4.f), dh = r.f(R * I, 1.f);
    std::vector<float> h(R * I), dgu(R * 2 * I);
    emu::launch(dim3{2}, dim3{256}, 0, [&] { swiglu_fwd_f32(gu.data(), gu.data() + I, h.data(), R, I, 2 * I); });
    emu::launch(dim3{2}, dim3{256}, 0,
                [&] { swiglu_bwd_f32(gu.data(), gu.data() + I, dh.data(), dgu.data(), dgu.data() + I, R, I, 2 * I); });
    std::vector<double> rh(R * I), rd(R * 2 * I);
    for (int i = 0; i < R; i++)
      for (int c = 0; c < I; c++) {
        const double g = gu[i * 2 * I + c], u = gu[i * 2 * I + I + c], s = 1 / (1 + std::exp(-g));
        rh[i * I + c] = g * s * u;
        rd[i * 2 * I + c] = dh[i * I + c] * u * s * (1 + g * (1 - s));
        rd[i * 2 * I + I + c] = dh[i * I + c] * g * s;
      }
    check("swiglu_fwd", h, rh, 1e-6);
    check("swiglu_bwd", dgu, rd, 1e-6);
  }

  // log-softmax / per-token log-prob and its backward; every third row has no target
  {
    const int R = 6, V = 3001;
    auto lg = r.f(R * V, 8.f);
    std::vector<u32> tgt(R);
    for (int i = 0; i < R; i++) tgt[i] = i % 3 == 2 ? 0xffffffffu : (u32)(r.next() * V);
    std::vector<float> lse(R), lp(R), coef(R), dl(R * V);
    for (int i = 0; i < R; i++) coef[i] = tgt[i] == 0xffffffffu ? 0.f : -0.25f * (i + 1);
    emu::launch(dim3{R}, dim3{1024}, 0, [&] { logprob_fwd_f32(lg.data(), tgt.data(), lse.data(), lp.data(), R, V); });
    emu::launch(dim3{R}, dim3{1024}, 0, [&] { logprob_bwd_f32(lg.data(), tgt.data(), lse.data(), coef.data(), dl.data(), R, V); });
    std::vector<double> rl(R), rp(R), rd(R * V);
    for (int i = 0; i < R; i++) {
      double m = -INFINITY, s = 0;
      for (int v = 0; v < V; v++) m = std::max(m, (double)lg[i * V + v]);
      for (int v = 0; v < V; v++) s += std::exp(lg[i * V + v] - m);
      rl[i] = m + std::log(s);
      rp[i] = tgt[i] == 0xffffffffu ? 0.0 : lg[i * V + tgt[i]] - rl[i];
      for (int v = 0; v < V; v++) rd[i * V + v] = coef[i] * ((u32)v == tgt[i] ? 1.0 : 0.0) - coef[i] * std::exp(lg[i * V + v] - rl[i]);
    }
    check("logprob_fwd lse", lse, rl, 1e-6);
    check("logprob_fwd logp (rows without a target: 0)", lp, rp, 1e-6);
    check("logprob_bwd", dl, rd, 1e-6);
  }

  // GRPO and SFT token losses
  {
    const int M = 700;
    auto lp = r.f(M, 3.f), od = r.f(M, 0.6f), rf = r.f(M, 0.6f), adv = r.f(M, 2.f);
    std::vector<float> old(M), ref(M), w(M, 1.f / M), coef(M), sums(3, 0.f);
    for (int i = 0; i < M; i++) old[i] = lp[i] + od[i], ref[i] = lp[i] + rf[i];
    emu::launch(dim3{(M + 255) / 256}, dim3{256}, 0, [&] {
      grpo_loss(lp.data(), old.data(), ref.data(), adv.data(), w.data(), coef.data(), sums.data(), M, 0.2f, 0.05f);
    });
    std::vector<double> rc(M), rs(3, 0.0);
    for (int i = 0; i < M; i++) {
      const double rho = std::exp((double)lp[i] - old[i]), s1 = rho * adv[i];
      const double s2 = std::clamp(rho, 0.8, 1.2) * adv[i];
      const bool c = s2 < s1;
      const double delta = (double)lp[i] - ref[i], e = std::exp(-delta);
      rc[i] = w[i] * ((c ? 0.0 : -rho * adv[i]) + 0.05 * (1 - e));
      rs[0] += w[i] * (-std::min(s1, s2) + 0.05 * (e - 1 + delta));
      rs[1] += w[i] * (e - 1 + delta);
      rs[2] += c;
    }
    check("grpo_loss dL/dlogp", coef, rc, 1e-6);
    check("grpo_loss sums (loss, kl, clipped)", sums, rs, 1e-5);
    std::vector<float> sc(M), ss(1, 0.f);
    emu::launch(dim3{(M + 255) / 256}, dim3{256}, 0, [&] { sft_loss(lp.data(), w.data(), sc.data(), ss.data(), M); });
    double want = 0;
    for (int i = 0; i < M; i++) want -= (double)w[i] * lp[i];
    check("sft_loss dL/dlogp", sc, std::vector<double>(M, -1.0 / M), 1e-6);
    check("sft_loss sum", ss, {want}, 1e-6);
  }

  // gradient norm, clip scale, clipping, AdamW, BF16 cast
  {
    const long long n = 20011;
    auto p = r.f(n, 1.f), g = r.f(n, 0.05f), m = r.f(n, 0.01f), v = r.f(n, 1e-4f);
    for (auto& x : v) x = std::fabs(x);
    const unsigned parts = 16;
    std::vector<double> partial(parts);
    std::vector<float> nrm(2);
    emu::launch(dim3{parts}, dim3{256}, 0, [&] { sumsq_partial(g.data(), n, partial.data()); });
    emu::launch(dim3{1}, dim3{1024}, 0, [&] { sumsq_final(partial.data(), parts, 1.0f, nrm.data()); });
    double ss = 0;
    for (float x : g) ss += (double)x * x;
    const double norm = std::sqrt(ss), sc = norm > 1.0 ? 1.0 / (norm + 1e-6) : 1.0;
    check("grad norm and clip scale", nrm, {norm, sc}, 1e-6);
    auto gs = g;
    emu::launch(dim3{8}, dim3{256}, 0, [&] { scale_inplace(gs.data(), n, nrm.data() + 1); });
    std::vector<double> rg(n);
    for (long long i = 0; i < n; i++) rg[i] = g[i] * (double)nrm[1];
    check("scale_inplace", gs, rg, 1e-6);
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.01f, bc1 = 1 - 0.9f * 0.9f, bc2 = 1 - 0.95f * 0.95f;
    std::vector<double> rp(n), rm(n), rv(n);
    for (long long i = 0; i < n; i++) {
      const double gi = (double)g[i] * nrm[1];
      rm[i] = b1 * (double)m[i] + (1 - b1) * gi;
      rv[i] = b2 * (double)v[i] + (1 - b2) * gi * gi;
      rp[i] = p[i] - lr * ((rm[i] / bc1) / (std::sqrt(rv[i] / bc2) + eps) + wd * (double)p[i]);
    }
    emu::launch(dim3{8}, dim3{256}, 0,
                [&] { adamw(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, bc1, bc2, nrm.data() + 1); });
    check("adamw params", p, rp, 1e-6);
    check("adamw m", m, rm, 1e-6);
    check("adamw v", v, rv, 1e-6);
    std::vector<float> src = {1.0f, -2.5f, 3.14159265f, 1e-30f, 65504.f, 1.00390625f, 1.01171875f, -0.f};
    std::vector<bf16> out(src.size());
    emu::launch(dim3{1}, dim3{256}, 0, [&] { cast_bf16(src.data(), out.data(), (long long)src.size()); });
    std::vector<float> got(src.size());
    std::vector<double> want(src.size());
    for (std::size_t i = 0; i < src.size(); i++) {
      got[i] = (float)out[i].bits;
      // round to nearest even on the upper 16 bits
      const std::uint32_t u = std::bit_cast<std::uint32_t>(src[i]);
      want[i] = (double)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    check("cast_bf16 (round to nearest even)", got, want, 0.0);
  }

  // embedding
  {
    const int Vv = 50, C = 24, N = 30;
    auto table = r.f(Vv * C, 1.f), dout = r.f(N * C, 1.f);
    std::vector<u32> tok(N);
    for (int i = 0; i < N; i++) tok[i] = (u32)(r.next() * 10);  // repeated ids: the backward adds up
    std::vector<float> y(N * C), dt(Vv * C, 0.f);
    emu::launch(dim3{N}, dim3{256}, 0, [&] { embed_fwd_f32(table.data(), tok.data(), y.data(), N, C); });
    emu::launch(dim3{N}, dim3{256}, 0, [&] { embed_bwd(dout.data(), tok.data(), dt.data(), N, C); });
    std::vector<double> ry(N * C), rd(Vv * C, 0.0);
    for (int i = 0; i < N; i++)
      for (int c = 0; c < C; c++) ry[i * C + c] = table[tok[i] * C + c], rd[tok[i] * C + c] += dout[i * C + c];
    check("embed_fwd", y, ry, 0.0);
    check("embed_bwd (repeated tokens)", dt, rd, 1e-6);
  }

  // sampling: greedy (ties to the lowest id), stop tokens and the length limit, a vanishing top-p, and at
  // top-p 0.6 over a known distribution only the nucleus is ever drawn, each of its tokens in proportion
  {
    const int B = 4, V = 1500;
    auto lg = r.f(B * V, 4.f);
    lg[1 * V + 7] = lg[1 * V + 9] = 50.f;  // a tie in row 1: token 7 wins
    std::vector<u32> stop = {7}, lens = {3, 3, 14, 3}, tok(B);
    std::vector<float> lp(B);
    std::vector<u8> fin(B, 0);
    for (float topp : {1.f, 1e-6f}) {
      const float temp = topp == 1.f ? 0.f : 1.f;
      // greedy sees the tie (lowest id wins); the nucleus of a vanishing top-p is the single most likely token,
      // so that run gets row 1 without the tie
      if (temp > 0.f) lg[1 * V + 9] = 1.f;
      std::vector<double> wt(B), wl(B), wf(B);
      for (int b = 0; b < B; b++) {
        int best = 0;
        double m = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) best = lg[b * V + v] > lg[b * V + best] ? v : best;
        for (int v = 0; v < V; v++) m = std::max(m, (double)lg[b * V + v]);
        for (int v = 0; v < V; v++) s += std::exp(lg[b * V + v] - m);
        wt[b] = best, wl[b] = lg[b * V + best] - (m + std::log(s));
        wf[b] = (best == 7 || lens[b] + 1 >= 16) ? 1 : 0;
      }
      emu::launch(dim3{B}, dim3{1024}, 0, [&] {
        sample_rows_f32(lg.data(), B, V, temp, topp, 7, 3, stop.data(), 1, lens.data(), 16, tok.data(), lp.data(), fin.data());
      });
      const std::string tag = temp == 0.f ? "greedy" : "top-p 1e-6 at T=1";
      check("sample_rows " + tag + ": tokens", std::vector<float>(tok.begin(), tok.end()), wt, 0.0);
      check("sample_rows " + tag + ": untempered log-probs", lp, wl, 1e-6);
      check("sample_rows " + tag + ": finished", std::vector<float>(fin.begin(), fin.end()), wf, 0.0);
      std::fill(fin.begin(), fin.end(), 0);
    }
    // one row: p = 0.4, 0.3, 0.2, 0.1 on ids 3, 11, 5, 8 (and ~0 elsewhere): top-p 0.6 keeps {3, 11}
    const int V1 = 300;
    std::vector<float> one(V1, -1e4f);
    one[3] = std::log(0.4f), one[11] = std::log(0.3f), one[5] = std::log(0.2f), one[8] = std::log(0.1f);
    std::vector<u32> l1 = {0}, t1(1), none = {0};
    std::vector<float> p1(1);
    std::vector<u8> f1(1);
    int count3 = 0, count11 = 0, other = 0;
    const int draws = 60;
    for (u32 step = 0; step < draws; step++) {
      f1[0] = 0;
      emu::launch(dim3{1}, dim3{1024}, 0, [&] {
        sample_rows_f32(one.data(), 1, V1, 1.f, 0.6f, 99, step, none.data(), 0, l1.data(), 1000, t1.data(), p1.data(), f1.data());
      });
      (t1[0] == 3 ? count3 : t1[0] == 11 ? count11 : other)++;
    }
    // 60 draws of p(3) = 4/7: 34.3 expected, 3 sigma = 11.5
    std::printf("     top-p 0.6 draws: id 3: %d, id 11: %d, other: %d\n", count3, count11, other);
    check("sample_rows top-p 0.6: only the nucleus, in proportion",
          {(float)other, std::fabs(count3 - draws * 4.f / 7.f) < 11.5f ? 0.f : 1.f}, {0.0, 0.0}, 0.0);
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
