//! Correctness tests of the model and its kernels (run by `cargo test --release`).
//!
//! Finite differences. Every check compares an analytic gradient with a central difference
//! (L(x+h) − L(x−h)) / 2h of a scalar L computed in f64 from the f32 forward pass, where h is the perturbation
//! actually representable in f32. With h ≈ 1e-2 and O(1) inputs the truncation error is O(h²·L''') ≈ 1e-4
//! relative, and the f32 rounding of the forward pass (≈6e-8 per value, ~1e3 values summed) contributes
//! ≈ 2e-6 / 2h ≈ 1e-4 absolute; so a correct gradient shows a relative error ‖g_fd − g‖ / ‖g‖ of ~1e-3, and the
//! bound is set at 2e-2 for layers and 3e-2 per tensor for the whole model (whose FD quotient adds the rounding
//! of ~10⁴ activations). A wrong index, a missing term or a wrong sign gives errors of order 1.

use super::loss::token_loss;
use super::*;
use crate::backend::gemm::{Gemm, GemmPath, Kernel, Mat, Scalar};
use crate::backend::ops::{self, AttnDims};

fn rand_vec(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

/// Relative error ‖a − b‖ / max(‖a‖, ‖b‖, floor).
fn rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    d / na.max(nb).max(floor)
}

/// Central differences of `f` at the coordinates `idx` of `x`.
fn fd(x: &mut [f32], idx: &[usize], eps: f32, f: &mut dyn FnMut(&[f32]) -> f64) -> Vec<f64> {
    idx.iter()
        .map(|&i| {
            let x0 = x[i];
            x[i] = x0 + eps;
            let hp = (x[i] - x0) as f64;
            let lp = f(x);
            x[i] = x0 - eps;
            let hm = (x0 - x[i]) as f64;
            let lm = f(x);
            x[i] = x0;
            (lp - lm) / (hp + hm)
        })
        .collect()
}

fn weighted(y: &[f32], w: &[f32]) -> f64 {
    y.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum()
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

// ------------------------------------------------------------------------------------------------------------
// GEMM paths

#[test]
fn gemm_paths_agree_with_f64_reference() {
    let mut rng = Rng::new(1, 0);
    let shapes = [
        (1, 1, 1),
        (7, 5, 3),
        (13, 33, 17),
        (64, 48, 300),
        (130, 70, 257),
        (6, 16, 8),
        (97, 129, 65),
    ];
    let mut paths = vec![GemmPath::Scalar];
    for p in [GemmPath::Builtin, GemmPath::Blas] {
        if p.available() {
            paths.push(p);
        }
    }
    for &(m, n, k) in &shapes {
        for ta in [false, true] {
            for tb in [false, true] {
                let (lda, ldb, ldc) = (
                    if ta { m + 3 } else { k + 2 },
                    if tb { k + 1 } else { n + 4 },
                    n + 5,
                );
                let a = rand_vec(&mut rng, if ta { k * lda } else { m * lda }, 1.0);
                let b = rand_vec(&mut rng, if tb { n * ldb } else { k * ldb }, 1.0);
                let c0 = rand_vec(&mut rng, m * ldc, 1.0);
                for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-1.5, 0.25)] {
                    // f64 reference and the rounding bound γ_k·Σ|a||b| (+|beta·c|), γ_k = k·2^-24 / (1 − k·2^-24).
                    let mut want = vec![0.0f64; m * n];
                    let mut bound = vec![0.0f64; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let (mut s, mut sa) = (0.0f64, 0.0f64);
                            for p in 0..k {
                                let av = if ta { a[p * lda + i] } else { a[i * lda + p] } as f64;
                                let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] } as f64;
                                s += av * bv;
                                sa += (av * bv).abs();
                            }
                            let cv = c0[i * ldc + j] as f64;
                            want[i * n + j] =
                                alpha as f64 * s + if beta == 0.0 { 0.0 } else { beta as f64 * cv };
                            let u = (k as f64 + 2.0) * 6e-8;
                            bound[i * n + j] = 2.0
                                * u
                                * (alpha.abs() as f64 * sa + (beta.abs() as f64 * cv.abs()))
                                + 1e-6;
                        }
                    }
                    for &p in &paths {
                        for threads in [1, 2, 3] {
                            let mut c = c0.clone();
                            Gemm {
                                m,
                                n,
                                k,
                                alpha,
                                a: Mat {
                                    data: &a,
                                    ld: lda,
                                    trans: ta,
                                },
                                b: Mat {
                                    data: &b,
                                    ld: ldb,
                                    trans: tb,
                                },
                                beta,
                            }
                            .run_on(p, threads, &mut c, ldc);
                            for i in 0..m {
                                for j in 0..n {
                                    let got = c[i * ldc + j] as f64;
                                    let e = (got - want[i * n + j]).abs();
                                    assert!(
                                        e <= bound[i * n + j],
                                        "{p:?} t={threads} ta={ta} tb={tb} {m}x{n}x{k} a={alpha} b={beta} ({i},{j}): {got} vs {} (err {e} > {})",
                                        want[i * n + j],
                                        bound[i * n + j]
                                    );
                                }
                                // padding columns of C are untouched
                                for j in n..ldc {
                                    assert_eq!(c[i * ldc + j], c0[i * ldc + j]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // beta = 0 must not read C (NaN in C is overwritten).
    let a = vec![1.0f32; 4];
    let b = vec![1.0f32; 4];
    let mut c = vec![f32::NAN; 4];
    Scalar.sgemm(
        &Gemm {
            m: 2,
            n: 2,
            k: 2,
            alpha: 1.0,
            a: Mat::n(&a, 2),
            b: Mat::n(&b, 2),
            beta: 0.0,
        },
        &mut c,
        2,
    );
    assert_eq!(c, vec![2.0; 4]);
    for p in [GemmPath::Builtin, GemmPath::Blas] {
        if p.available() {
            let mut c = vec![f32::NAN; 4];
            Gemm {
                m: 2,
                n: 2,
                k: 2,
                alpha: 1.0,
                a: Mat::n(&a, 2),
                b: Mat::n(&b, 2),
                beta: 0.0,
            }
            .run_on(p, 1, &mut c, 2);
            assert_eq!(c, vec![2.0; 4], "{p:?}");
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// Layer gradient checks

#[test]
fn rmsnorm_gradients() {
    let mut rng = Rng::new(2, 0);
    let (n, c, eps) = (5, 24, 1e-5f32);
    let mut x = rand_vec(&mut rng, n * c, 1.0);
    let mut w = rand_vec(&mut rng, c, 1.0);
    let dy = rand_vec(&mut rng, n * c, 1.0);
    let run = |x: &[f32], w: &[f32]| {
        let mut y = vec![0.0; n * c];
        let mut r = vec![0.0; n];
        ops::rmsnorm_fwd(x, w, eps, &mut y, &mut r);
        (y, r)
    };
    let (_, rstd) = run(&x, &w);
    let mut dx = vec![0.0f32; n * c];
    let mut dw = vec![0.0f32; c];
    ops::rmsnorm_bwd(&dy, &x, &w, &rstd, &mut dx, &mut dw);
    let w0 = w.clone();
    let num = fd(&mut x, &all(n * c), 1e-2, &mut |x| {
        weighted(&run(x, &w0).0, &dy)
    });
    let e = rel_err(
        &num,
        &dx.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    assert!(e < 2e-2, "rmsnorm dx rel err {e}");
    let x0 = x.clone();
    let num = fd(&mut w, &all(c), 1e-2, &mut |w| {
        weighted(&run(&x0, w).0, &dy)
    });
    let e = rel_err(
        &num,
        &dw.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    assert!(e < 2e-2, "rmsnorm dw rel err {e}");
}

#[test]
fn swiglu_gradients() {
    let mut rng = Rng::new(3, 0);
    let (n, i) = (4, 10);
    let mut gu = rand_vec(&mut rng, n * 2 * i, 1.5);
    let dh = rand_vec(&mut rng, n * i, 1.0);
    let run = |gu: &[f32]| {
        let mut h = vec![0.0; n * i];
        ops::swiglu_fwd(gu, &mut h, i);
        h
    };
    let mut dgu = vec![0.0f32; n * 2 * i];
    ops::swiglu_bwd(&dh, &gu, &mut dgu, i);
    let num = fd(&mut gu, &all(n * 2 * i), 1e-2, &mut |g| {
        weighted(&run(g), &dh)
    });
    let e = rel_err(
        &num,
        &dgu.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    assert!(e < 2e-2, "swiglu rel err {e}");
}

#[test]
fn rope_backward_is_the_inverse_rotation() {
    let mut rng = Rng::new(4, 0);
    let (n, heads, d, w) = (6, 3, 8, 3 * 8 + 5);
    let (cos, sin) = ops::rope_tables(16, d, 10000.0);
    let pos: Vec<usize> = (0..n).map(|r| (r * 5) % 16).collect();
    let mut x = rand_vec(&mut rng, n * w, 1.0);
    let dy = rand_vec(&mut rng, n * w, 1.0);
    let run = |x: &[f32]| {
        let mut y = x.to_vec();
        ops::rope(&mut y, w, heads, d, &pos, &cos, &sin, false);
        y
    };
    let mut dx = dy.clone();
    ops::rope(&mut dx, w, heads, d, &pos, &cos, &sin, true);
    let num = fd(&mut x, &all(n * w), 1e-2, &mut |x| weighted(&run(x), &dy));
    let e = rel_err(
        &num,
        &dx.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    assert!(e < 2e-2, "rope rel err {e}");
    // rotation preserves norms; position 0 is the identity
    let y = run(&x);
    for r in 0..n {
        for h in 0..heads {
            let a = &x[r * w + h * d..r * w + h * d + d];
            let b = &y[r * w + h * d..r * w + h * d + d];
            assert!((ops::dot(a, a) - ops::dot(b, b)).abs() < 1e-4);
            if pos[r] == 0 {
                assert_eq!(a, b);
            }
        }
        assert_eq!(
            &x[r * w + heads * d..(r + 1) * w],
            &y[r * w + heads * d..(r + 1) * w]
        );
    }
}

#[test]
fn attention_gradients_gqa() {
    // (T = 70 spans two query blocks of the blocked kernel; its check samples every 5th coordinate.)
    for &(h, kv, t) in &[(4usize, 2usize, 5usize), (2, 2, 5), (3, 1, 5), (2, 1, 70)] {
        let mut rng = Rng::new(5, h as u64);
        let dm = AttnDims {
            b: 2,
            t,
            h,
            kv,
            d: 4,
        };
        let w = dm.w();
        let n = dm.b * dm.t;
        let mut qkv = rand_vec(&mut rng, n * w, 1.0);
        let dout = rand_vec(&mut rng, n * h * dm.d, 1.0);
        let run = |qkv: &[f32]| {
            let mut probs = vec![0.0; dm.b * h * dm.t * dm.t];
            let mut out = vec![0.0; n * h * dm.d];
            ops::attention_fwd(dm, qkv, &mut probs, &mut out);
            (out, probs)
        };
        let (_, probs) = run(&qkv);
        let mut dqkv = vec![f32::NAN; n * w];
        ops::attention_bwd(dm, &dout, &qkv, &probs, &mut dqkv);
        let idx: Vec<usize> = (0..n * w).step_by(if t > 10 { 5 } else { 1 }).collect();
        let num = fd(&mut qkv, &idx, 1e-2, &mut |x| weighted(&run(x).0, &dout));
        let e = rel_err(
            &num,
            &idx.iter().map(|&i| dqkv[i] as f64).collect::<Vec<_>>(),
            1e-6,
        );
        assert!(e < 2e-2, "attention (H={h}, KV={kv}, T={t}) rel err {e}");
        // causality: the first position's output depends only on itself
        let (o1, _) = run(&qkv);
        let mut q2 = qkv.clone();
        for x in &mut q2[w..] {
            *x += 1.0;
        }
        let (o2, _) = run(&q2);
        assert_eq!(&o1[..h * dm.d], &o2[..h * dm.d]);
    }
}

#[test]
fn logits_loss_gradient() {
    // ∂(Σ c_k·logπ(y_k))/∂z via write_dlogits against finite differences of gather_logprobs.
    let mut rng = Rng::new(6, 0);
    let (rows, v) = (5, 11);
    let mut z = rand_vec(&mut rng, rows * v, 2.0);
    let targets = vec![
        loss::Target { row: 0, token: 3 },
        loss::Target { row: 2, token: 10 },
        loss::Target { row: 4, token: 0 },
    ];
    let coef = vec![0.7f32, -1.3, 2.0];
    let f = |z: &[f32]| -> f64 {
        let lp = loss::gather_logprobs(z, v, &targets);
        lp.iter()
            .zip(&coef)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let mut dz = z.clone();
    loss::write_dlogits(&mut dz, v, &targets, &coef);
    let num = fd(&mut z, &all(rows * v), 1e-2, &mut |z| f(z));
    let e = rel_err(
        &num,
        &dz.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    assert!(e < 2e-2, "logits rel err {e}");
}

#[test]
fn grpo_token_loss_derivative() {
    // ∂ℓ/∂logπ of the GRPO token loss, away from the clip boundaries, in f64-exact differences.
    let spec = LossSpec::Grpo {
        clip_eps: 0.2,
        kl_coef: 0.05,
    };
    for &(lp, adv, old, rf) in &[
        (-1.0f32, 1.0f32, -1.0f32, -1.3f32), // ratio 1, inside
        (-1.0, 1.0, -1.5, -0.8),             // ratio 1.65 > 1+ε, A > 0: clipped, no pg gradient
        (-1.0, 1.0, -0.5, -1.0),             // ratio 0.61 < 1−ε, A > 0: unclipped branch is the min
        (-1.0, -1.0, -1.5, -1.2),            // ratio 1.65, A < 0: unclipped branch is the min
        (-1.0, -1.0, -0.5, -1.2),            // ratio 0.61, A < 0: clipped
    ] {
        let (_, _, clipped, d) = token_loss(&spec, lp, adv, old, rf);
        let h = 1e-3f32;
        let up = token_loss(&spec, lp + h, adv, old, rf).0;
        let dn = token_loss(&spec, lp - h, adv, old, rf).0;
        let num = (up - dn) / (2.0 * h as f64);
        assert!(
            (num - d as f64).abs() < 2e-3,
            "lp={lp} A={adv} old={old}: fd {num} vs {d} (clipped {clipped})"
        );
    }
    let (_, kl, _, _) = token_loss(&spec, -1.0, 1.0, -1.0, -1.0);
    assert_eq!(kl, 0.0);
}

// ------------------------------------------------------------------------------------------------------------
// Whole-model gradient checks

fn test_config(h: usize, kv: usize, bias: bool, tied: bool) -> ModelConfig {
    ModelConfig {
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: h,
        num_key_value_heads: kv,
        vocab_size: 13,
        rms_norm_eps: 1e-5,
        rope_theta: 1000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 16,
        attention_bias: bias,
    }
}

/// A model with larger-than-default random weights (so every path carries signal) and random norm/bias values.
fn test_model(cfg: ModelConfig, seed: u64) -> Model {
    let mut m = Model::new(cfg, seed).unwrap();
    let mut rng = Rng::new(seed, 99);
    let table = m.param_table().to_vec();
    let p = m.params_mut();
    for t in &table {
        for x in &mut p[t.offset..t.offset + t.len] {
            *x = if t.shape.len() == 1 {
                1.0 + 0.3 * rng.normal() as f32
            } else {
                0.4 * rng.normal() as f32
            };
        }
    }
    m
}

fn test_batch(rng: &mut Rng, v: usize) -> Vec<Sequence> {
    let mk = |rng: &mut Rng, len: usize, pl: usize, adv: f32| Sequence {
        tokens: (0..len)
            .map(|_| (rng.next_u64() % v as u64) as u32)
            .collect(),
        prompt_len: pl,
        advantage: adv,
        old_logprobs: vec![],
        ref_logprobs: vec![],
    };
    vec![mk(rng, 7, 3, 1.2), mk(rng, 5, 1, -0.7), mk(rng, 9, 4, 0.4)]
}

/// Σ_tokens ℓ_t in f64 from a forward-only pass.
fn total_loss(m: &mut Model, seqs: &[Sequence], spec: &LossSpec) -> f64 {
    let lps = m.logprobs(seqs).unwrap();
    let mut s = 0.0;
    for (seq, lp) in seqs.iter().zip(&lps) {
        for (r, &l) in lp.iter().enumerate() {
            let (old, rf) = match spec {
                LossSpec::Sft => (0.0, 0.0),
                LossSpec::Grpo { .. } => (seq.old_logprobs[r], seq.ref_logprobs[r]),
            };
            s += token_loss(spec, l, seq.advantage, old, rf).0;
        }
    }
    s
}

fn model_grad_check(cfg: ModelConfig, spec: LossSpec) {
    let mut m = test_model(cfg.clone(), 7);
    let mut rng = Rng::new(8, 0);
    let mut seqs = test_batch(&mut rng, cfg.vocab_size);
    if let LossSpec::Grpo { .. } = spec {
        // old log-probs offset from the current ones so tokens fall inside, above and below the clip range
        // (ratios 1, e^0.5, e^−0.5 — far from the boundaries 0.8/1.2 relative to what a perturbation moves).
        let cur = m.logprobs(&seqs).unwrap();
        for (s, lp) in seqs.iter_mut().zip(cur) {
            let offs = [0.0f32, 0.5, -0.5];
            s.old_logprobs = lp
                .iter()
                .enumerate()
                .map(|(r, &l)| l - offs[r % 3])
                .collect();
            s.ref_logprobs = lp
                .iter()
                .enumerate()
                .map(|(r, &l)| l + 0.3 - 0.2 * (r % 4) as f32)
                .collect();
        }
    }
    m.zero_grads().unwrap();
    let st = m.accumulate_grads(&seqs, &spec, 1.0).unwrap();
    assert!(st.tokens > 0);
    let analytic = m.grads().unwrap().to_vec();
    let table = m.param_table().to_vec();
    let mut worst = (0.0f64, String::new());
    for t in &table {
        // up to 8 coordinates per tensor, spread over it
        let k = t.len.min(8);
        let idx: Vec<usize> = (0..k)
            .map(|j| t.offset + (j * t.len) / k + (j * 7) % (t.len / k).max(1))
            .collect();
        let mut p = m.params().to_vec();
        let num = fd(&mut p, &idx, 1e-2, &mut |p| {
            let mut mm = test_model(cfg.clone(), 7);
            mm.set_params(p).unwrap();
            total_loss(&mut mm, &seqs, &spec)
        });
        let ana: Vec<f64> = idx.iter().map(|&i| analytic[i] as f64).collect();
        let e = rel_err(&num, &ana, 1e-3);
        if e > worst.0 {
            worst = (e, t.name.clone());
        }
        assert!(
            e < 3e-2,
            "{cfg:?} {spec:?}: {} rel err {e}\n fd {num:?}\n an {ana:?}",
            t.name
        );
    }
    eprintln!(
        "grad check {spec:?} H={} KV={} bias={} tied={}: worst {:.2e} ({})",
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.attention_bias,
        cfg.tie_word_embeddings,
        worst.0,
        worst.1
    );
}

#[test]
fn model_gradients_sft_gqa_bias_tied() {
    model_grad_check(test_config(4, 2, true, true), LossSpec::Sft);
}
#[test]
fn model_gradients_sft_mqa_untied_nobias() {
    model_grad_check(test_config(4, 1, false, false), LossSpec::Sft);
}
#[test]
fn model_gradients_grpo_gqa_bias_untied() {
    model_grad_check(
        test_config(4, 2, true, false),
        LossSpec::Grpo {
            clip_eps: 0.2,
            kl_coef: 0.1,
        },
    );
}
#[test]
fn model_gradients_grpo_mha_tied() {
    model_grad_check(
        test_config(2, 2, true, true),
        LossSpec::Grpo {
            clip_eps: 0.2,
            kl_coef: 0.05,
        },
    );
}

#[test]
fn micro_batches_accumulate_like_one_batch() {
    let cfg = test_config(4, 2, true, true);
    let mut rng = Rng::new(9, 0);
    let seqs = test_batch(&mut rng, cfg.vocab_size);
    let mut a = test_model(cfg.clone(), 3);
    let mut b = test_model(cfg.clone(), 3);
    a.zero_grads().unwrap();
    a.accumulate_grads(&seqs, &LossSpec::Sft, 0.1).unwrap();
    b.zero_grads().unwrap();
    b.accumulate_grads(&seqs[..1], &LossSpec::Sft, 0.1).unwrap();
    b.accumulate_grads(&seqs[1..], &LossSpec::Sft, 0.1).unwrap();
    let (ga, gb): (Vec<f64>, Vec<f64>) = (
        a.grads().unwrap().iter().map(|&x| x as f64).collect(),
        b.grads().unwrap().iter().map(|&x| x as f64).collect(),
    );
    let e = rel_err(&ga, &gb, 1e-9);
    assert!(e < 1e-5, "micro-batch accumulation differs: {e}");
}

// ------------------------------------------------------------------------------------------------------------
// Sampling

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3], vec![5], vec![7, 8, 9, 10, 11, 2], vec![4, 4]]
}

/// 20 prompts: enough for the per-thread sampling groups to kick in when the machine has ≥ 2 threads.
fn many_prompts() -> Vec<Vec<u32>> {
    (0..20u32)
        .map(|i| {
            (0..1 + (i as usize * 7) % 6)
                .map(|j| (i * 13 + j as u32 * 5) % 128)
                .collect()
        })
        .collect()
}

#[test]
fn kv_cache_logprobs_match_full_forward() {
    let cfg = ModelConfig {
        max_position_embeddings: 40,
        ..ModelConfig::preset("tiny").unwrap()
    };
    let mut m = Model::new(cfg, 11).unwrap();
    // stronger weights than the default init, so distributions are far from uniform
    m.params_mut().iter_mut().for_each(|x| *x *= 3.0);
    let cases = [
        (1.0f32, 1.0f32, prompts(), false),
        (0.7, 0.9, prompts(), false),
        (0.0, 1.0, prompts(), false),
        (1.0, 0.95, many_prompts(), false), // independent groups of sequences
        (1.0, 0.95, many_prompts(), true),  // whole batch, column-split products
        (0.0, 1.0, many_prompts(), true),
    ];
    for (temperature, top_p, ps, split) in cases {
        let req = SampleRequest {
            prompts: ps.clone(),
            temperature,
            top_p,
            max_new_tokens: 30,
            stop_tokens: vec![],
            seed: 5,
        };
        let outs = m.sample_mode(&req, split).unwrap();
        let seqs: Vec<Sequence> = ps
            .iter()
            .zip(&outs)
            .map(|(p, o)| Sequence {
                tokens: [p.clone(), o.tokens.clone()].concat(),
                prompt_len: p.len(),
                ..Default::default()
            })
            .collect();
        let full = m.logprobs(&seqs).unwrap();
        let mut maxd = 0.0f32;
        for (o, f) in outs.iter().zip(&full) {
            assert_eq!(o.logprobs.len(), f.len());
            for (a, b) in o.logprobs.iter().zip(f) {
                maxd = maxd.max((a - b).abs());
            }
        }
        // Same math, different summation order (packed prefill / single-row decode vs padded batch): the
        // log-probs agree to f32 rounding; 1e-4 absolute is ~100 ulp of a log-prob of magnitude ~5.
        assert!(
            maxd < 1e-4,
            "T={temperature} top_p={top_p}: KV-cache vs full-forward log-prob diff {maxd}"
        );
        // prompt 2 + 30 new tokens = 36 ≤ 40 positions; prompt lengths differ, so all reach max_new_tokens
        for o in &outs {
            assert_eq!(o.tokens.len(), 30);
            assert_eq!(o.finish, Finish::Length);
        }
        if temperature == 0.0 {
            // greedy: every token is the argmax of the full-forward distribution
            for (s, o) in seqs.iter().zip(&outs) {
                let t = s.tokens.len();
                let logits = m.forward_logits(&s.tokens, 1, t).unwrap();
                let v = m.config().vocab_size;
                for (r, &tok) in o.tokens.iter().enumerate() {
                    let row = &logits[(s.prompt_len + r - 1) * v..(s.prompt_len + r) * v];
                    let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    assert!(
                        row[tok as usize] >= best - 1e-5,
                        "greedy token is not the argmax"
                    );
                }
            }
        }
    }
}

#[test]
fn sampling_is_deterministic_and_stops() {
    let mut m = Model::new(ModelConfig::preset("tiny").unwrap(), 12).unwrap();
    m.params_mut().iter_mut().for_each(|x| *x *= 3.0);
    let req = SampleRequest {
        prompts: prompts(),
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 20,
        stop_tokens: vec![],
        seed: 42,
    };
    let a = m.sample(&req).unwrap();
    let b = m.sample(&req).unwrap();
    assert_eq!(a, b, "same seed, same output");
    let c = m
        .sample(&SampleRequest {
            seed: 43,
            ..req.clone()
        })
        .unwrap();
    assert_ne!(a, c, "another seed, another output");
    // a sequence's output does not depend on the rest of the batch
    let solo = m
        .sample(&SampleRequest {
            prompts: vec![prompts()[0].clone()],
            ..req.clone()
        })
        .unwrap();
    assert_eq!(solo[0].tokens, a[0].tokens);
    for (x, y) in solo[0].logprobs.iter().zip(&a[0].logprobs) {
        assert!(
            (x - y).abs() < 1e-5,
            "log-probs differ only by rounding (batch size changes GEMM blocking)"
        );
    }
    // …also when the batch is cut into per-thread groups
    let many = SampleRequest {
        prompts: many_prompts(),
        ..req.clone()
    };
    let all = m.sample(&many).unwrap();
    assert_eq!(
        all,
        m.sample(&many).unwrap(),
        "grouped sampling is deterministic"
    );
    let first = m
        .sample(&SampleRequest {
            prompts: many_prompts()[..1].to_vec(),
            ..req.clone()
        })
        .unwrap();
    assert_eq!(first[0].tokens, all[0].tokens);
    // stop tokens: stop at the first occurrence, included
    let stop = a[0].tokens[3];
    let s = m
        .sample(&SampleRequest {
            stop_tokens: vec![stop],
            ..req.clone()
        })
        .unwrap();
    let first = a[0].tokens.iter().position(|&t| t == stop).unwrap();
    assert_eq!(s[0].tokens, a[0].tokens[..=first].to_vec());
    assert_eq!(s[0].finish, Finish::Stop);
    // top_p tiny = greedy
    let g = m
        .sample(&SampleRequest {
            temperature: 0.0,
            ..req.clone()
        })
        .unwrap();
    let tp = m
        .sample(&SampleRequest {
            top_p: 1e-6,
            ..req.clone()
        })
        .unwrap();
    assert_eq!(
        g.iter().map(|o| &o.tokens).collect::<Vec<_>>(),
        tp.iter().map(|o| &o.tokens).collect::<Vec<_>>()
    );
    // generation stops at max_position_embeddings
    let cfg = ModelConfig {
        max_position_embeddings: 8,
        ..ModelConfig::preset("tiny").unwrap()
    };
    let mut small = Model::new(cfg, 1).unwrap();
    let o = small
        .sample(&SampleRequest {
            prompts: vec![vec![1, 2, 3, 4, 5, 6]],
            max_new_tokens: 8,
            ..req
        })
        .unwrap();
    assert_eq!(o[0].tokens.len(), 2);
    assert_eq!(o[0].finish, Finish::Length);
}

/// A vocabulary large enough that the token choice of a step runs on several threads (rows × V ≥
/// PAR_CHOOSE_MIN), and batches of 1 – 8 (decode products through `gemv::skinny`): the output is the same
/// as with everything on one thread, and a sequence's tokens do not depend on the batch.
#[test]
fn sampling_with_a_large_vocabulary_is_the_same_on_any_thread_count() {
    let cfg = ModelConfig {
        vocab_size: 20_000,
        ..ModelConfig::preset("tiny").unwrap()
    };
    let mut m = Model::new(cfg, 13).unwrap();
    m.params_mut().iter_mut().for_each(|x| *x *= 3.0);
    let ps: Vec<Vec<u32>> = (0..8u32)
        .map(|i| {
            (0..3 + i as usize)
                .map(|j| (i * 977 + j as u32 * 31) % 20_000)
                .collect()
        })
        .collect();
    for top_p in [1.0f32, 0.9] {
        let req = SampleRequest {
            prompts: ps.clone(),
            temperature: 1.0,
            top_p,
            max_new_tokens: 12,
            stop_tokens: vec![],
            seed: 3,
        };
        let par = m.sample(&req).unwrap();
        let one = crate::backend::threads::serial(|| m.sample(&req)).unwrap();
        if crate::backend::gemm::path() == crate::backend::gemm::GemmPath::Blas {
            // OpenBLAS's kernels for some CPUs (its `Zen` set, measured) round a product's element
            // differently when the rows are split differently (the prefill's row blocks follow the thread
            // count): the tokens must still agree, the log-probs to rounding (docs/kernels.md
            // "Reproducibility"). Our own kernels (SPARK_GEMM=builtin|scalar) are held to bit equality.
            for (p, o) in par.iter().zip(&one) {
                assert_eq!(
                    p.tokens, o.tokens,
                    "top_p {top_p}: threads changed the tokens"
                );
                assert_eq!(p.finish, o.finish);
                for (x, y) in p.logprobs.iter().zip(&o.logprobs) {
                    assert!(
                        (x - y).abs() < 1e-5,
                        "top_p {top_p}: log-prob {x} on 2 threads, {y} on 1"
                    );
                }
            }
        } else {
            assert_eq!(par, one, "top_p {top_p}: threads changed the output");
        }
        // (sequence 0 keeps its PRNG stream alone; its prefill runs other products, so log-probs move by rounding)
        let solo = m
            .sample(&SampleRequest {
                prompts: ps[..1].to_vec(),
                ..req.clone()
            })
            .unwrap();
        assert_eq!(
            solo[0].tokens, par[0].tokens,
            "top_p {top_p}: a sequence alone differs from the same sequence in a batch"
        );
        for (x, y) in solo[0].logprobs.iter().zip(&par[0].logprobs) {
            assert!(
                (x - y).abs() < 1e-5,
                "top_p {top_p}: log-prob {x} alone, {y} in the batch"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// Training behaviour

#[test]
fn sft_overfits_a_fixed_batch() {
    let mut m = Model::new(ModelConfig::preset("tiny").unwrap(), 21).unwrap();
    let mut rng = Rng::new(22, 0);
    let batch: Vec<Sequence> = (0..4)
        .map(|_| Sequence {
            tokens: (0..24).map(|_| (rng.next_u64() % 128) as u32).collect(),
            prompt_len: 4,
            ..Default::default()
        })
        .collect();
    let opt = AdamWParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
    };
    let first = m
        .train_step(std::slice::from_ref(&batch), &LossSpec::Sft, &opt)
        .unwrap();
    assert!(
        (first.loss - (128f32).ln()).abs() < 0.3,
        "initial loss {} ≈ ln 128",
        first.loss
    );
    let mut last = first;
    for _ in 0..150 {
        last = m
            .train_step(
                &[batch[..2].to_vec(), batch[2..].to_vec()],
                &LossSpec::Sft,
                &opt,
            )
            .unwrap();
    }
    eprintln!("SFT overfit: loss {} → {}", first.loss, last.loss);
    // 80 random tokens memorised: the token-mean cross-entropy falls from ln 128 ≈ 4.85 to below 0.1.
    assert!(
        last.loss < 0.1,
        "SFT did not overfit: final loss {}",
        last.loss
    );
    assert_eq!(last.tokens, 80);
}

#[test]
fn grpo_positive_advantage_raises_logprob() {
    for adv in [1.0f32, -1.0] {
        let mut m = Model::new(ModelConfig::preset("tiny").unwrap(), 31).unwrap();
        let reference = m.clone_frozen();
        let mut seq = Sequence {
            tokens: vec![3, 9, 27, 81, 115, 89, 11, 33],
            prompt_len: 3,
            advantage: adv,
            ..Default::default()
        };
        let mut refm = reference;
        let lp0 = m.logprobs(std::slice::from_ref(&seq)).unwrap()[0].clone();
        seq.old_logprobs = lp0.clone();
        seq.ref_logprobs = refm.logprobs(std::slice::from_ref(&seq)).unwrap()[0].clone();
        let opt = AdamWParams {
            lr: 1e-3,
            ..Default::default()
        };
        let spec = LossSpec::Grpo {
            clip_eps: 0.2,
            kl_coef: 0.001,
        };
        let st = m.train_step(&[vec![seq.clone()]], &spec, &opt).unwrap();
        assert_eq!(st.tokens, 5);
        assert!(st.kl.abs() < 1e-9 && st.clip_fraction == 0.0);
        assert!(
            (st.loss + adv).abs() < 1e-4,
            "at ratio 1 the loss is −A: {}",
            st.loss
        );
        let lp1 = m.logprobs(std::slice::from_ref(&seq)).unwrap()[0].clone();
        let (s0, s1): (f32, f32) = (lp0.iter().sum(), lp1.iter().sum());
        if adv > 0.0 {
            assert!(
                s1 > s0 + 1e-3,
                "positive advantage must raise the log-prob: {s0} → {s1}"
            );
        } else {
            assert!(
                s1 < s0 - 1e-3,
                "negative advantage must lower the log-prob: {s0} → {s1}"
            );
        }
        // the reference copy did not move and refuses training
        assert_eq!(
            refm.logprobs(std::slice::from_ref(&seq)).unwrap()[0],
            seq.ref_logprobs
        );
        assert!(refm.train_step(&[vec![seq.clone()]], &spec, &opt).is_err());
        // a second step now reports a KL > 0
        let st2 = m.train_step(&[vec![seq]], &spec, &opt).unwrap();
        assert!(st2.kl > 0.0);
    }
}

// ------------------------------------------------------------------------------------------------------------
// Layout, init, invalid input

#[test]
fn layout_and_presets() {
    for name in ModelConfig::PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        let mut m = Model::new(cfg.clone(), 1).unwrap();
        let mut off = 0;
        for t in m.param_table() {
            assert_eq!(t.offset, off, "{}", t.name);
            assert_eq!(t.len, t.shape.iter().product::<usize>());
            off += t.len;
        }
        assert_eq!(off, cfg.num_params());
        assert_eq!(m.params().len(), off);
        assert!(
            !m.has_train_buffers(),
            "gradient buffers are allocated by the first training call"
        );
        assert_eq!(m.grads().unwrap().len(), off);
        assert!(m.has_train_buffers());
    }
    let small = ModelConfig::preset("small").unwrap();
    let n = small.num_params();
    assert!(
        (3_000_000..3_400_000).contains(&n),
        "small preset has {n} parameters"
    );
    let m = Model::new(small, 5).unwrap();
    let names: Vec<&str> = m.param_table().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "model.embed_tokens.weight");
    assert!(names.contains(&"model.layers.3.self_attn.q_proj.bias"));
    assert!(names.contains(&"model.layers.0.mlp.down_proj.weight"));
    assert_eq!(*names.last().unwrap(), "model.norm.weight");
    let untied = Model::new(
        ModelConfig {
            tie_word_embeddings: false,
            ..ModelConfig::preset("tiny").unwrap()
        },
        1,
    )
    .unwrap();
    assert_eq!(untied.param_table().last().unwrap().name, "lm_head.weight");
    // deterministic init
    let a = Model::new(ModelConfig::preset("tiny").unwrap(), 9).unwrap();
    let b = Model::new(ModelConfig::preset("tiny").unwrap(), 9).unwrap();
    let c = Model::new(ModelConfig::preset("tiny").unwrap(), 10).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
}

#[test]
fn invalid_input_is_an_error() {
    let mut m = Model::new(ModelConfig::preset("tiny").unwrap(), 1).unwrap();
    let ok = Sequence {
        tokens: vec![1, 2, 3],
        prompt_len: 1,
        ..Default::default()
    };
    let opt = AdamWParams::default();
    let err = |r: Result<TrainStats, String>| r.unwrap_err();
    assert!(err(m.train_step(&[vec![]], &LossSpec::Sft, &opt)).contains("empty"));
    assert!(m.train_step(&[], &LossSpec::Sft, &opt).is_err());
    let bad = Sequence {
        tokens: vec![1, 128],
        ..ok.clone()
    };
    assert!(err(m.train_step(&[vec![bad.clone()]], &LossSpec::Sft, &opt)).contains("out of range"));
    assert!(m.logprobs(&[bad]).is_err());
    let long = Sequence {
        tokens: vec![1; 257],
        ..ok.clone()
    };
    assert!(err(m.train_step(&[vec![long]], &LossSpec::Sft, &opt)).contains("max_position"));
    assert!(m
        .train_step(
            &[vec![Sequence {
                prompt_len: 0,
                ..ok.clone()
            }]],
            &LossSpec::Sft,
            &opt
        )
        .is_err());
    assert!(
        m.train_step(
            &[vec![Sequence {
                prompt_len: 3,
                ..ok.clone()
            }]],
            &LossSpec::Sft,
            &opt
        )
        .is_err(),
        "no response tokens"
    );
    let grpo = LossSpec::Grpo {
        clip_eps: 0.2,
        kl_coef: 0.01,
    };
    let g = Sequence {
        advantage: 1.0,
        old_logprobs: vec![-1.0, -1.0],
        ref_logprobs: vec![-1.0, -1.0],
        ..ok.clone()
    };
    assert!(m.train_step(&[vec![g.clone()]], &grpo, &opt).is_ok());
    assert!(err(m.train_step(
        &[vec![Sequence {
            advantage: f32::NAN,
            ..g.clone()
        }]],
        &grpo,
        &opt
    ))
    .contains("not finite"));
    assert!(m
        .train_step(
            &[vec![Sequence {
                old_logprobs: vec![-1.0, f32::NAN],
                ..g.clone()
            }]],
            &grpo,
            &opt
        )
        .is_err());
    assert!(m
        .train_step(
            &[vec![Sequence {
                old_logprobs: vec![-1.0],
                ..g.clone()
            }]],
            &grpo,
            &opt
        )
        .is_err());
    assert!(m
        .train_step(
            &[vec![g.clone()]],
            &LossSpec::Grpo {
                clip_eps: f32::NAN,
                kl_coef: 0.0
            },
            &opt
        )
        .is_err());
    assert!(m
        .train_step(
            &[vec![g]],
            &grpo,
            &AdamWParams {
                lr: f32::NAN,
                ..opt
            }
        )
        .is_err());
    assert!(m.forward_logits(&[1, 2, 3], 2, 2).is_err());
    assert!(m.forward_logits(&[], 0, 0).is_err());
    assert!(m.forward_logits(&[1, 200], 1, 2).is_err());
    let req = SampleRequest {
        prompts: vec![vec![1]],
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: 4,
        stop_tokens: vec![],
        seed: 1,
    };
    assert!(m
        .sample(&SampleRequest {
            prompts: vec![],
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            prompts: vec![vec![]],
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            prompts: vec![vec![999]],
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            prompts: vec![vec![1; 256]],
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            temperature: f32::NAN,
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            top_p: 0.0,
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            max_new_tokens: 0,
            ..req.clone()
        })
        .is_err());
    assert!(m
        .sample(&SampleRequest {
            stop_tokens: vec![128],
            ..req
        })
        .is_err());
    assert!(m.set_params(&[0.0]).is_err());
    let mut p = m.params().to_vec();
    p[0] = f32::NAN;
    assert!(m.set_params(&p).is_err());
    // NaN gradients: the step is refused and the parameters stay as they were
    let before = m.params().to_vec();
    m.grads_mut().unwrap()[0] = f32::NAN;
    assert!(m.clip_and_step(&opt).is_err());
    assert_eq!(m.params(), &before[..]);
    // configs
    let base = ModelConfig::preset("tiny").unwrap();
    for bad in [
        ModelConfig {
            hidden_size: 0,
            ..base.clone()
        },
        ModelConfig {
            num_attention_heads: 3,
            ..base.clone()
        },
        ModelConfig {
            num_key_value_heads: 3,
            ..base.clone()
        },
        ModelConfig {
            rms_norm_eps: f32::NAN,
            ..base.clone()
        },
        ModelConfig {
            vocab_size: usize::MAX,
            ..base.clone()
        },
        ModelConfig {
            hidden_size: 16384,
            intermediate_size: 65536,
            num_hidden_layers: 256,
            ..base.clone()
        },
    ] {
        assert!(Model::new(bad, 1).is_err());
    }
}
