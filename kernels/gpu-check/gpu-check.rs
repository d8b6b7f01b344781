//! `pnpm gpu:check [--compile-only] [--json FILE]` (built by kernels/gpu-check/run.sh against the crate's rlib;
//! needs no Node.js, so it can be carried to a GPU machine).
//!
//! --compile-only: compiles every CUDA kernel with NVRTC for sm_80 and sm_90 cubins and compute_80 PTX
//! (`spark_kernels::cuda::check`); exits 1 on any error or warning. Needs NVRTC (SPARK_CUDA_LIB_DIR), no GPU.
//! Without it (a GPU machine): every op forward and backward on `--device cuda:N` (default cuda:0) against the
//! CPU backend on random inputs, FP32, with the tolerances of `spark_kernels::cuda::gpu` (exit 1 on any
//! failure), including cuBLASLt's products in FP32, TF32 and BF16 (`cuda::blaslt`); then, if every op passed,
//! the products' throughput (BF16, TF32) at a 0.5B model's training shapes (`--json` carries them;
//! `gpu-check/torch_gemm.py` times PyTorch on the same shapes and prints the ratios). Exits 2 with the reason
//! when no usable device is present. Not yet run on a GPU. The model-level checks (SFT/GRPO steps, greedy
//! sampling, model throughput against PyTorch) are not implemented: the CUDA model is not wired yet; the
//! output says so.
use std::process::ExitCode;
use std::time::Instant;

use spark_kernels::cuda::{blaslt::Precision, check, gpu, libs, nvrtc::Nvrtc, Device};

fn main() -> ExitCode {
    let mut compile_only = false;
    let mut json: Option<String> = None;
    let mut device = 0u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--compile-only" => compile_only = true,
            "--json" => match args.next() {
                Some(f) => json = Some(f),
                None => return usage("--json needs a file"),
            },
            "--device" => match args.next().map(|d| Device::parse(&d)) {
                Some(Ok(Device::Cuda(n))) => device = n,
                _ => return usage("--device needs cuda:N"),
            },
            "-h" | "--help" => {
                println!("usage: gpu-check [--compile-only] [--device cuda:N] [--json FILE]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let dirs = libs::env_dirs();
    if !compile_only {
        return gpu_mode(device, json);
    }
    let nvrtc = match Nvrtc::load(&dirs) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("gpu-check: {}", e.message);
            return ExitCode::from(1);
        }
    };
    let (maj, min) = nvrtc.version();
    println!("gpu-check: NVRTC {maj}.{min} from {}", nvrtc.path());
    let start = Instant::now();
    let outcomes = check::compile_all(&nvrtc);
    let total = start.elapsed();
    let mut failed = 0;
    for o in &outcomes {
        println!(
            "{:<5} {:<13} {:<16} {:>6} ms {:>8} bytes",
            if o.ok { "ok" } else { "FAIL" },
            o.module,
            o.target,
            o.millis,
            o.bytes
        );
        if !o.problem.is_empty() {
            for l in o.problem.lines().take(40) {
                println!("      {l}");
            }
        }
        failed += usize::from(!o.ok);
    }
    println!(
        "gpu-check: {} compiled, {} failed, in {:.1} s",
        outcomes.len() - failed,
        failed,
        total.as_secs_f64()
    );
    if let Some(f) = json {
        if let Err(e) = std::fs::write(
            &f,
            check::report_json((maj, min), total.as_secs_f64(), &outcomes),
        ) {
            eprintln!("gpu-check: cannot write {f}: {e}");
            return ExitCode::from(1);
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!(
        "gpu-check: {msg}\nusage: gpu-check [--compile-only] [--device cuda:N] [--json FILE]"
    );
    ExitCode::from(64)
}

fn gpu_mode(device: u32, json: Option<String>) -> ExitCode {
    let start = Instant::now();
    let g = match gpu::Gpu::open(device) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gpu-check: no usable CUDA device: {}", e.message);
            return ExitCode::from(2);
        }
    };
    println!(
        "gpu-check: cuda:{device} {} (sm_{}{}, {} SMs), kernels loaded in {:.1} s",
        g.info.name,
        g.info.capability.0,
        g.info.capability.1,
        g.info.multiprocessors,
        start.elapsed().as_secs_f64()
    );
    let outcomes = match gpu::check_ops(&g) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gpu-check: the op check failed to run: {}", e.message);
            return ExitCode::from(1);
        }
    };
    let mut failed = 0;
    for o in &outcomes {
        println!(
            "{:<5} {:<56} error {:.2e} (tolerance {:.0e})",
            if o.ok { "ok" } else { "FAIL" },
            o.op,
            o.error,
            o.tolerance
        );
        failed += usize::from(!o.ok);
    }
    println!(
        "gpu-check: ops: {} passed, {} failed, in {:.1} s",
        outcomes.len() - failed,
        failed,
        start.elapsed().as_secs_f64()
    );
    // matrix-product throughput through cuBLASLt (the model's plans), at a 0.5B model's training shapes
    let rates = if failed == 0 {
        match gpu::gemm_rates(&g, &[Precision::Bf16, Precision::Tf32], 20, 3) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("gpu-check: the GEMM timing failed to run: {}", e.message);
                return ExitCode::from(1);
            }
        }
    } else {
        Vec::new()
    };
    for r in &rates {
        println!(
            "gemm  {:>5} x {:>6} x {:>5} {:<5} {:>9.3} ms {:>7.1} TFLOP/s",
            r.m, r.n, r.k, r.precision, r.millis, r.tflops
        );
    }
    println!("gpu-check: not checked: SFT/GRPO steps, greedy sampling and model throughput (the CUDA model is not wired yet)");
    if let Some(f) = json {
        if let Err(e) = std::fs::write(&f, gpu::report_json(&g.info, &outcomes, &rates)) {
            eprintln!("gpu-check: cannot write {f}: {e}");
            return ExitCode::from(1);
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
