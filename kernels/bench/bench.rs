//! The kernels benchmark (`pnpm bench:kernels` → kernels/bench/run.sh → this program). Not a test: it measures,
//! side by side in one run and with the same thread count (2 unless --threads), through the real code path:
//!   1. GEMM GFLOP/s at the model's matmul shapes: our path (OpenBLAS single-threaded kernels split over our
//!      threads), OpenBLAS standalone (`cblas_sgemm` with its own thread pool), and the built-in kernel (its
//!      AVX-512 tile where the CPU has one, and its AVX2 tile beside it);
//!   2. training tokens/s (forward + backward + grad clip + AdamW, SFT loss on every position of a (B, T) batch)
//!      for the tiny and small presets, and the GFLOP/s of the GEMMs inside those steps;
//!   3. sampling tokens/s with the KV cache (64 prompts × 16 tokens, 64 new tokens, temperature 1), the same in
//!      each parallel mode (groups of sequences per thread, or each product's columns split over the threads),
//!      and on an AVX-512 CPU the same with the built-in kernel's AVX2 tile (the batch's products run on it);
//!   4. the same training and sampling in PyTorch (bench/torch_ref.py, OMP_WAIT_POLICY=PASSIVE), and the ratios;
//!   5. small-batch sampling with a Qwen2.5-0.5B-shaped model (random init; bound by streaming the weights once
//!      per step): 1, 2 and 8 prompts × 16 tokens, 16 new tokens each, temperature 1, ours and PyTorch's in the
//!      same run (`--only decode` runs it alone; skipped by --quick and --no-decode);
//!   6. loading a Qwen2.5-0.5B-shaped checkpoint (494 M parameters) from F32 and BF16 safetensors files to a
//!      ready model (`checkpoint::load_model`, what `Model.load` runs natively): seconds and MB/s, with the file
//!      in the page cache (warm) and evicted from it (cold). Skipped by --quick and --no-load; `--only load` runs
//!      it alone.
//! Prints a table; `--json FILE` writes every figure.

use spark_kernels::backend::blas::blas;
use spark_kernels::backend::gemm::{self, Gemm, GemmPath, Kernel, Mat};
use spark_kernels::backend::gemm_avx2::{self, Isa};
use spark_kernels::backend::threads::{num_threads, par_rows};
use spark_kernels::checkpoint;
use spark_kernels::model::sample::splits_columns;
use spark_kernels::model::{
    AdamWParams, LossSpec, Model, ModelConfig, Rng, SampleRequest, Sequence,
};
use spark_kernels::safetensors::{self as st, TensorData, TensorOut};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

struct Opts {
    json: Option<String>,
    torch: bool,
    batch: usize,
    seq: usize,
    steps: usize,
    reps: usize,
    /// Sections to run: gemm, train, sample, load (all by default).
    only: Option<String>,
    quick: bool,
    /// Skip the 0.5 B checkpoint load section (it writes 3 GB of temporary files).
    no_load: bool,
    /// Skip the 0.5 B small-batch sampling section (2 GB of weights per side, ≈ 1 – 2 minutes).
    no_decode: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        json: None,
        torch: true,
        batch: 8,
        seq: 128,
        steps: 4,
        reps: 3,
        only: None,
        quick: false,
        no_load: false,
        no_decode: false,
    };
    let mut it = std::env::args().skip(1);
    fn num(it: &mut impl Iterator<Item = String>, name: &str) -> Result<usize, String> {
        it.next()
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{name} needs a positive integer"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => o.json = Some(it.next().ok_or("--json needs a file")?),
            "--no-torch" => o.torch = false,
            "--no-load" => o.no_load = true,
            "--no-decode" => o.no_decode = true,
            "--only" => {
                o.only = Some(it.next().ok_or(
                    "--only needs sections (gemm, train, sample, decode, load; comma-separated)",
                )?)
            }
            "--batch" => o.batch = num(&mut it, "--batch")?,
            "--seq" => o.seq = num(&mut it, "--seq")?,
            "--steps" => o.steps = num(&mut it, "--steps")?,
            "--reps" => o.reps = num(&mut it, "--reps")?,
            "--quick" => {
                o.steps = 2;
                o.reps = 1;
                o.quick = true;
            }
            "-h" | "--help" => {
                println!("usage: bench [--json FILE] [--no-torch] [--batch B] [--seq T] [--steps K] [--reps R] [--quick] [--no-load] [--no-decode] [--only SECTION[,SECTION…]] (sections: gemm, train, sample, decode, load)");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.batch == 0 || o.seq < 2 || o.steps == 0 || o.reps == 0 {
        return Err("batch, steps and reps must be ≥ 1 and seq ≥ 2".into());
    }
    Ok(o)
}

/// Best wall time over `reps` of `f`, each rep running `f` enough times to last ≥ 50 ms; returns seconds per call.
fn time_best(reps: usize, mut f: impl FnMut()) -> f64 {
    if reps == 0 {
        return f64::NAN;
    }
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = Instant::now();
        let mut n = 0u32;
        while n == 0 || t0.elapsed().as_secs_f64() < 0.05 {
            f();
            n += 1;
        }
        best = best.min(t0.elapsed().as_secs_f64() / n as f64);
    }
    best
}

struct Shape {
    key: &'static str,
    name: &'static str,
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let threads = num_threads();
    let mut fig: BTreeMap<String, f64> = BTreeMap::new();
    println!(
        "spark kernels benchmark — {}",
        spark_kernels::backend::describe()
    );
    println!("threads {threads}; training batch {}×{}; sampling 64 prompts × 16 tokens → 64 new tokens\n", o.batch, o.seq);
    fig.insert("threads".into(), threads as f64);
    fig.insert("loadavg_1m_start".into(), loadavg());

    // 1. GEMM at the small preset's shapes (N = B·T rows in training, 64 rows in decode).
    let small = ModelConfig::preset("small").expect("preset");
    let (c, i, v, w) = (
        small.hidden_size,
        small.intermediate_size,
        small.vocab_size,
        small.qkv_width(),
    );
    let nrow = o.batch * o.seq;
    let shapes = [
        Shape {
            key: "fwd_qkv",
            name: "fwd qkv  x·Wᵀ",
            ta: false,
            tb: true,
            m: nrow,
            n: w,
            k: c,
        },
        Shape {
            key: "fwd_gate_up",
            name: "fwd gate|up",
            ta: false,
            tb: true,
            m: nrow,
            n: 2 * i,
            k: c,
        },
        Shape {
            key: "fwd_down",
            name: "fwd down",
            ta: false,
            tb: true,
            m: nrow,
            n: c,
            k: i,
        },
        Shape {
            key: "bwd_dx",
            name: "bwd dX = dY·W",
            ta: false,
            tb: false,
            m: nrow,
            n: c,
            k: 2 * i,
        },
        Shape {
            key: "bwd_dw",
            name: "bwd dW = dYᵀ·X",
            ta: true,
            tb: false,
            m: 2 * i,
            n: c,
            k: nrow,
        },
        Shape {
            key: "head",
            name: "head logits",
            ta: false,
            tb: true,
            m: nrow,
            n: v,
            k: c,
        },
        Shape {
            key: "decode_gate_up",
            name: "decode gate|up",
            ta: false,
            tb: true,
            m: 64,
            n: 2 * i,
            k: c,
        },
    ];
    let bl = blas();
    let mut rng = Rng::new(1, 1);
    let want = |sec: &str| {
        o.only
            .as_deref()
            .is_none_or(|x| x.split(',').any(|x| x == sec))
    };
    if want("gemm") {
        println!(
            "GEMM GFLOP/s ({threads} threads)           M     N     K |   ours  OpenBLAS  ours/OB | built-in  bi/OB | bi {} / avx2",
            gemm_avx2::isa().name()
        );
    }
    let (mut sum_ours, mut sum_ob, mut sum_bi, mut sum_bi2, mut sum_flop) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for s in shapes.iter().filter(|_| want("gemm")) {
        let (ar, ac) = if s.ta { (s.k, s.m) } else { (s.m, s.k) };
        let (br, bc) = if s.tb { (s.n, s.k) } else { (s.k, s.n) };
        let a: Vec<f32> = (0..ar * ac).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..br * bc).map(|_| rng.normal() as f32).collect();
        let mut cbuf = vec![0.0f32; s.m * s.n];
        let (a_op, b_op) = (
            Mat {
                data: &a,
                ld: ac,
                trans: s.ta,
            },
            Mat {
                data: &b,
                ld: bc,
                trans: s.tb,
            },
        );
        let prod = Gemm {
            m: s.m,
            n: s.n,
            k: s.k,
            alpha: 1.0,
            a: a_op,
            b: b_op,
            beta: 0.0,
        };
        let flop = 2.0 * (s.m * s.n * s.k) as f64;
        let mut run = |p: GemmPath| time_best(o.reps, || prod.run_on(p, threads, &mut cbuf, s.n));
        let t_ours = run(gemm::path());
        let t_bi = if GemmPath::Builtin.available() {
            run(GemmPath::Builtin)
        } else {
            f64::NAN
        };
        // the built-in kernel with its AVX2 tile (the same as t_bi where the CPU has no AVX-512)
        let t_bi2 = if GemmPath::Builtin.available() {
            let isa = gemm_avx2::isa();
            gemm_avx2::set_isa(Isa::Avx2);
            let t = run(GemmPath::Builtin);
            gemm_avx2::set_isa(isa);
            t
        } else {
            f64::NAN
        };
        let t_ob = match bl {
            Some(bl) => bl.with_blas_threads(threads, || {
                time_best(o.reps, || bl.sgemm(&prod, &mut cbuf, s.n))
            }),
            None => f64::NAN,
        };
        let (g_ours, g_ob, g_bi) = (flop / t_ours * 1e-9, flop / t_ob * 1e-9, flop / t_bi * 1e-9);
        println!(
            "  {:<30} {:>5} {:>5} {:>5} | {:>6.1} {:>9.1} {:>8.2} | {:>8.1} {:>6.2} | {:>14.2}",
            s.name,
            s.m,
            s.n,
            s.k,
            g_ours,
            g_ob,
            g_ours / g_ob,
            g_bi,
            g_bi / g_ob,
            t_bi2 / t_bi
        );
        let key = s.key;
        fig.insert(format!("gemm.{key}.ours_gflops"), g_ours);
        fig.insert(format!("gemm.{key}.openblas_gflops"), g_ob);
        fig.insert(format!("gemm.{key}.builtin_gflops"), g_bi);
        fig.insert(
            format!("gemm.{key}.builtin_avx2_gflops"),
            flop / t_bi2 * 1e-9,
        );
        sum_ours += t_ours;
        sum_bi2 += t_bi2;
        sum_ob += t_ob;
        sum_bi += t_bi;
        sum_flop += flop;
    }
    let (agg_ours, agg_ob, agg_bi) = (
        sum_flop / sum_ours * 1e-9,
        sum_flop / sum_ob * 1e-9,
        sum_flop / sum_bi * 1e-9,
    );
    if want("gemm") {
        println!(
            "  {:<48} | {:>6.1} {:>9.1} {:>8.2} | {:>8.1} {:>6.2} | {:>14.2}\n",
            "all shapes (time-weighted)",
            agg_ours,
            agg_ob,
            agg_ours / agg_ob,
            agg_bi,
            agg_bi / agg_ob,
            sum_bi2 / sum_bi
        );
    }
    fig.insert("gemm.all.ours_gflops".into(), agg_ours);
    fig.insert("gemm.all.openblas_gflops".into(), agg_ob);
    fig.insert("gemm.all.builtin_gflops".into(), agg_bi);
    fig.insert("gemm.all.builtin_over_openblas".into(), agg_bi / agg_ob);
    fig.insert(
        "gemm.all.builtin_avx2_gflops".into(),
        sum_flop / sum_bi2 * 1e-9,
    );

    // 2–3. Training and sampling through the model API.
    let model_section = want("train") || want("sample");
    let torch = if o.torch && model_section {
        run_torch(&o, threads, want("train"))
    } else {
        BTreeMap::new()
    };
    if model_section {
        println!("Model ({threads} threads)                 ours     PyTorch   ours/PyTorch");
    }
    for preset in ["tiny", "small"].into_iter().filter(|_| model_section) {
        let cfg = ModelConfig::preset(preset).expect("preset");
        let mut m = Model::new(cfg.clone(), 7).expect("model");
        let mut r = Rng::new(3, 0);
        let batch: Vec<Sequence> = (0..o.batch)
            .map(|_| Sequence {
                tokens: (0..o.seq)
                    .map(|_| (r.next_u64() % cfg.vocab_size as u64) as u32)
                    .collect(),
                prompt_len: 1,
                ..Default::default()
            })
            .collect();
        let opt = AdamWParams {
            lr: 1e-4,
            ..Default::default()
        };
        let mbs = vec![batch];
        m.train_step(&mbs, &LossSpec::Sft, &opt).expect("train");
        let mut best = f64::INFINITY;
        let mut gemm_gflops = 0.0;
        for _ in 0..if want("train") { o.reps } else { 0 } {
            gemm::stats_enable(true);
            let t0 = Instant::now();
            for _ in 0..o.steps {
                m.train_step(&mbs, &LossSpec::Sft, &opt).expect("train");
            }
            let dt = t0.elapsed().as_secs_f64();
            let (fl, secs) = gemm::stats();
            gemm::stats_enable(false);
            if dt < best {
                best = dt;
                gemm_gflops = fl as f64 / secs * 1e-9;
                fig.insert(format!("{preset}.train_gemm_share"), secs / dt);
            }
        }
        let train_tps = (o.batch * o.seq * o.steps) as f64 / best;
        let prompts: Vec<Vec<u32>> = (0..64)
            .map(|_| (0..16).map(|_| (r.next_u64() % 128) as u32).collect())
            .collect();
        let req = SampleRequest {
            prompts,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 64,
            stop_tokens: vec![],
            seed: 1,
        };
        let mut generated = 0usize;
        let t_s = time_best(if want("sample") { o.reps } else { 0 }, || {
            generated = m
                .sample(&req)
                .expect("sample")
                .iter()
                .map(|x| x.tokens.len())
                .sum()
        });
        let sample_tps = generated as f64 / t_s;
        // the same calls in each parallel mode (groups of sequences per thread / each product's columns split):
        // the default's figure is the one above, the other mode is timed here
        let mut mode_tps = [f64::NAN; 2];
        if want("sample") {
            let default_split = splits_columns(cfg.num_params());
            for (i, split) in [false, true].into_iter().enumerate() {
                mode_tps[i] = if split == default_split {
                    sample_tps
                } else {
                    let t = time_best(o.reps, || {
                        m.sample_mode(&req, split).expect("sample");
                    });
                    generated as f64 / t
                };
            }
        }
        // the same calls with the built-in kernel's AVX2 tile, where the CPU would use its AVX-512 one
        let sample_avx2_tps = if want("sample") && gemm_avx2::isa() == Isa::Avx512 {
            gemm_avx2::set_isa(Isa::Avx2);
            let t = time_best(o.reps, || {
                m.sample(&req).expect("sample");
            });
            gemm_avx2::set_isa(Isa::Avx512);
            generated as f64 / t
        } else {
            f64::NAN
        };
        let tt = torch
            .get(&format!("{preset}.train_tokens_per_s"))
            .copied()
            .unwrap_or(f64::NAN);
        let ts = torch
            .get(&format!("{preset}.sample_tokens_per_s"))
            .copied()
            .unwrap_or(f64::NAN);
        println!("  {preset:<6} params {:>9}", cfg.num_params());
        if want("train") {
            println!(
                "    training tokens/s          {:>9.0} {:>10.0} {:>10.2}",
                train_tps,
                tt,
                train_tps / tt
            );
        }
        println!(
            "    sampling tokens/s          {:>9.0} {:>10.0} {:>10.2}",
            sample_tps,
            ts,
            sample_tps / ts
        );
        if want("sample") {
            for (i, mode) in ["groups", "column-split"].into_iter().enumerate() {
                println!(
                    "    sampling, {mode:<12} mode {:>7.0} {:>10.0} {:>10.2}",
                    mode_tps[i],
                    ts,
                    mode_tps[i] / ts
                );
            }
            fig.insert(format!("{preset}.sample_groups_tokens_per_s"), mode_tps[0]);
            fig.insert(format!("{preset}.sample_split_tokens_per_s"), mode_tps[1]);
        }
        if sample_avx2_tps.is_finite() {
            println!(
                "    sampling, built-in AVX2 tile {:>7.0} {:>10.0} {:>10.2}   (AVX-512 tile / AVX2 tile {:.2})",
                sample_avx2_tps,
                ts,
                sample_avx2_tps / ts,
                sample_tps / sample_avx2_tps
            );
            fig.insert(
                format!("{preset}.sample_avx2_tile_tokens_per_s"),
                sample_avx2_tps,
            );
        }
        if want("train") {
            println!(
                "    GEMM GFLOP/s inside a training step {:>6.1}  ({:.0}% of OpenBLAS standalone {:.1}; GEMM share of step {:.0}%)",
                gemm_gflops,
                100.0 * gemm_gflops / agg_ob,
                agg_ob,
                100.0 * fig.get(&format!("{preset}.train_gemm_share")).copied().unwrap_or(0.0)
            );
        }
        fig.insert(format!("{preset}.params"), cfg.num_params() as f64);
        // (only the sections that ran: a skipped one would read as 0 tokens/s)
        if want("train") {
            fig.insert(format!("{preset}.train_tokens_per_s"), train_tps);
            fig.insert(format!("{preset}.torch_train_tokens_per_s"), tt);
            fig.insert(
                format!("{preset}.train_ratio_ours_over_torch"),
                train_tps / tt,
            );
            fig.insert(format!("{preset}.train_gemm_gflops"), gemm_gflops);
            fig.insert(
                format!("{preset}.train_gemm_over_openblas"),
                gemm_gflops / agg_ob,
            );
        }
        if want("sample") {
            fig.insert(format!("{preset}.sample_tokens_per_s"), sample_tps);
            fig.insert(format!("{preset}.torch_sample_tokens_per_s"), ts);
            fig.insert(
                format!("{preset}.sample_ratio_ours_over_torch"),
                sample_tps / ts,
            );
        }
    }
    // 5. Small-batch sampling with a 0.5 B model.
    if want("decode") && !o.no_decode && (!o.quick || o.only.is_some()) {
        bench_decode_05b(&o, threads, &mut fig);
    }
    // 6. Loading a 0.5 B checkpoint.
    if want("load") && !o.no_load && (!o.quick || o.only.is_some()) {
        bench_load(o.reps, &mut fig);
    }
    fig.insert("loadavg_1m_end".into(), loadavg());
    println!(
        "\nload average (1 min) at start {:.1}, at end {:.1}",
        fig["loadavg_1m_start"], fig["loadavg_1m_end"]
    );
    if let Some(path) = &o.json {
        let body: Vec<String> = fig
            .iter()
            .map(|(k, v)| {
                format!(
                    "  \"{k}\": {}",
                    if v.is_finite() {
                        format!("{v:.4}")
                    } else {
                        "null".into()
                    }
                )
            })
            .collect();
        let text = format!("{{\n{}\n}}\n", body.join(",\n"));
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("bench: cannot write {path}: {e}");
            std::process::exit(1);
        }
        println!("\nwrote {path}");
    }
}

/// The Qwen2.5-0.5B configuration (its config.json): 494,032,768 parameters, tied embeddings, q/k/v bias.
fn qwen05b() -> ModelConfig {
    ModelConfig {
        hidden_size: 896,
        intermediate_size: 4864,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        vocab_size: 151_936,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        max_position_embeddings: 32_768,
        attention_bias: true,
    }
}

/// Batch sizes of the 0.5 B sampling rows.
const DECODE_BATCHES: [usize; 3] = [1, 2, 8];
/// Prompt length and new tokens of the 0.5 B sampling rows.
const DECODE_PROMPT: usize = 16;
const DECODE_NEW: usize = 16;

/// A Qwen2.5-0.5B-shaped model with random weights (uniform in ±0.05; one PRNG stream per block, in parallel).
fn random_05b() -> Model {
    let cfg = qwen05b();
    let mut p = vec![0.0f32; cfg.num_params()];
    par_rows(&mut p, 1 << 20, 1, |b0, blk| {
        for (k, row) in blk.chunks_mut(1 << 20).enumerate() {
            let mut r = Rng::new(11, (b0 + k) as u64);
            row.iter_mut()
                .for_each(|x| *x = (r.uniform() as f32 - 0.5) * 0.1);
        }
    });
    Model::from_params(cfg, p).expect("model")
}

/// Sampling tokens/s of the 0.5 B model at batch 1, 2 and 8 (prompts of 16 random tokens, 16 new tokens,
/// temperature 1; one warm-up call, then the best of `reps` calls), ours and PyTorch's (run first, so the two
/// 2 GB models are never in memory together).
fn bench_decode_05b(o: &Opts, threads: usize, fig: &mut BTreeMap<String, f64>) {
    let batches: Vec<String> = DECODE_BATCHES.iter().map(|b| b.to_string()).collect();
    let torch = if o.torch {
        torch_script(&[
            "--threads",
            &threads.to_string(),
            "--decode-preset",
            "qwen05b",
            "--decode-batches",
            &batches.join(","),
            "--prompt-len",
            &DECODE_PROMPT.to_string(),
            "--decode-new-tokens",
            &DECODE_NEW.to_string(),
            "--decode-reps",
            &o.reps.to_string(),
        ])
    } else {
        BTreeMap::new()
    };
    let mut m = random_05b();
    let v = m.config().vocab_size as u64;
    println!("\nSampling with a Qwen2.5-0.5B-shaped model ({DECODE_PROMPT}-token prompts, {DECODE_NEW} new tokens; {threads} threads)");
    println!("  batch      ours tokens/s   PyTorch tokens/s   ours/PyTorch");
    for b in DECODE_BATCHES {
        let mut r = Rng::new(5, b as u64);
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|_| {
                (0..DECODE_PROMPT)
                    .map(|_| (r.next_u64() % v) as u32)
                    .collect()
            })
            .collect();
        let req = SampleRequest {
            prompts,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: DECODE_NEW,
            stop_tokens: vec![],
            seed: 1,
        };
        let mut generated = 0usize;
        let mut run = || {
            generated = m
                .sample(&req)
                .expect("sample")
                .iter()
                .map(|x| x.tokens.len())
                .sum()
        };
        run();
        let mut best = f64::INFINITY;
        for _ in 0..o.reps {
            let t0 = Instant::now();
            run();
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let ours = generated as f64 / best;
        let pt = torch
            .get(&format!("qwen05b.b{b}.sample_tokens_per_s"))
            .copied()
            .unwrap_or(f64::NAN);
        println!("  {b:>5} {ours:>18.2} {pt:>18.2} {:>14.2}", ours / pt);
        fig.insert(format!("qwen05b.b{b}.sample_tokens_per_s"), ours);
        fig.insert(format!("qwen05b.b{b}.torch_sample_tokens_per_s"), pt);
        fig.insert(
            format!("qwen05b.b{b}.sample_ratio_ours_over_torch"),
            ours / pt,
        );
    }
}

/// Writes a 0.5 B checkpoint (random weights, F32 and BF16) to a temporary directory and times
/// `checkpoint::load_model` on each: warm (file in the page cache, as right after a download or a save) and
/// cold (the file's pages evicted with posix_fadvise(DONTNEED) first, so the read comes from the disk).
fn bench_load(reps: usize, fig: &mut BTreeMap<String, f64>) {
    let cfg = qwen05b();
    let n = cfg.num_params();
    let dir = std::env::temp_dir().join(format!("spark-bench-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let t0 = Instant::now();
    let m = random_05b();
    let bf: Vec<u16> = m.params().iter().map(|&x| st::f32_to_bf16(x)).collect();
    let files = [
        ("f32", dir.join("model-f32.safetensors")),
        ("bf16", dir.join("model-bf16.safetensors")),
    ];
    for (kind, path) in &files {
        let tensors: Vec<TensorOut<'_>> = m
            .param_table()
            .iter()
            .map(|t| TensorOut {
                name: &t.name,
                shape: t.shape.clone(),
                data: if *kind == "f32" {
                    TensorData::F32(&m.params()[t.offset..t.offset + t.len])
                } else {
                    TensorData::BF16(&bf[t.offset..t.offset + t.len])
                },
            })
            .collect();
        st::write(path, &tensors, &[("format", "pt")]).expect("write checkpoint");
    }
    drop(bf);
    drop(m);
    println!(
        "\nLoad a Qwen2.5-0.5B-shaped checkpoint ({n} parameters; files written in {:.1} s) to a ready model",
        t0.elapsed().as_secs_f64()
    );
    println!("  file        MB   warm s (cpu s)   warm MB/s   cold s (cpu s)   cold MB/s");
    for (kind, path) in &files {
        let mb = std::fs::metadata(path).expect("size").len() as f64 / 1e6;
        // (wall seconds, CPU seconds of the process: user + system, all threads), medians over reps
        let time = |cold: bool| -> (f64, f64) {
            let (mut wall, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                if cold {
                    evict(path);
                }
                let (t, c) = (Instant::now(), cpu_seconds());
                let m =
                    checkpoint::load_model(cfg.clone(), std::slice::from_ref(path)).expect("load");
                wall.push(t.elapsed().as_secs_f64());
                cpu.push(cpu_seconds() - c);
                assert_eq!(m.num_params(), n);
            }
            (median(&mut wall), median(&mut cpu))
        };
        let ((warm, warm_cpu), (cold, cold_cpu)) = (time(false), time(true));
        println!(
            "  {kind:<6} {mb:>8.0} {warm:>8.2} ({warm_cpu:>4.1}) {:>11.0} {cold:>8.2} ({cold_cpu:>4.1}) {:>11.0}",
            mb / warm,
            mb / cold
        );
        fig.insert(format!("load_05b.{kind}.mb"), mb);
        fig.insert(format!("load_05b.{kind}.warm_s"), warm);
        fig.insert(format!("load_05b.{kind}.warm_cpu_s"), warm_cpu);
        fig.insert(format!("load_05b.{kind}.cold_s"), cold);
        fig.insert(format!("load_05b.{kind}.cold_cpu_s"), cold_cpu);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// CPU time of this process so far (user + system, all threads; /proc/self/stat, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Drops a (written and synced) file's pages from the page cache, so the next read comes from the disk.
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
    }
    const POSIX_FADV_DONTNEED: i32 = 4;
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().ok();
    // SAFETY: a plain syscall wrapper on an open descriptor.
    unsafe { posix_fadvise(f.as_raw_fd(), 0, 0, POSIX_FADV_DONTNEED) };
}

/// Runs the PyTorch reference with the same shapes and thread count (its training figures only when `train`);
/// parses its `RESULT name value` lines.
fn run_torch(o: &Opts, threads: usize, train: bool) -> BTreeMap<String, f64> {
    let (t, b, s, k) = (
        threads.to_string(),
        o.batch.to_string(),
        o.seq.to_string(),
        o.steps.to_string(),
    );
    let mut args = vec![
        "--threads",
        &t,
        "--presets",
        "tiny,small",
        "--batch",
        &b,
        "--seq",
        &s,
        "--steps",
        &k,
    ];
    if !train {
        args.push("--no-train");
    }
    torch_script(&args)
}

/// Runs bench/torch_ref.py with `args` (and `--threads` among them) under OMP_WAIT_POLICY=PASSIVE.
fn torch_script(args: &[&str]) -> BTreeMap<String, f64> {
    let script = concat!(env!("SPARK_BENCH_DIR"), "/torch_ref.py");
    let threads = args
        .iter()
        .position(|a| *a == "--threads")
        .and_then(|i| args.get(i + 1))
        .copied()
        .unwrap_or("2");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OMP_NUM_THREADS", threads)
        .output();
    let mut r = BTreeMap::new();
    match out {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut p = line.split_whitespace();
                if let (Some("RESULT"), Some(k), Some(v)) = (p.next(), p.next(), p.next()) {
                    if let Ok(x) = v.parse::<f64>() {
                        r.insert(k.to_string(), x);
                    }
                }
            }
        }
        Ok(out) => eprintln!(
            "bench: PyTorch reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("bench: cannot run /usr/bin/python3 ({e}); PyTorch columns are empty"),
    }
    r
}

/// The 1-minute load average (other work on the machine skews every figure; recorded beside them).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}
