//! `pnpm gpu:check [--compile-only] [--json FILE]` (built by kernels/gpu-check/run.sh against the crate's rlib;
//! needs no Node.js, so it can be carried to a GPU machine).
//!
//! --compile-only: compiles every CUDA kernel with NVRTC for sm_80 and sm_90 cubins and compute_80 PTX
//! (`spark_kernels::cuda::check`); exits 1 on any error or warning. Needs NVRTC (SPARK_CUDA_LIB_DIR), no GPU.
//! Without it: the on-GPU checks, which are not implemented yet; it says so and exits 2.
use std::process::ExitCode;
use std::time::Instant;

use spark_kernels::cuda::{check, libs, nvrtc::Nvrtc};

fn main() -> ExitCode {
    let mut compile_only = false;
    let mut json: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--compile-only" => compile_only = true,
            "--json" => match args.next() {
                Some(f) => json = Some(f),
                None => return usage("--json needs a file"),
            },
            "-h" | "--help" => {
                println!("usage: gpu-check [--compile-only] [--json FILE]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let dirs = libs::env_dirs();
    if !compile_only {
        let p = libs::probe_in(&dirs);
        let found = p.devices.iter().map(|d| format!("cuda:{} {} sm_{}{}", d.ordinal, d.name, d.capability.0, d.capability.1)).collect::<Vec<_>>();
        if found.is_empty() {
            eprintln!(
                "gpu-check: no CUDA device: {}",
                p.driver.error.or(p.driver_error).unwrap_or_else(|| "the driver reports 0 devices".into())
            );
        } else {
            eprintln!("gpu-check: found {}", found.join(", "));
        }
        eprintln!("gpu-check: the on-GPU checks (ops against the CPU backend, SFT/GRPO steps, throughput) are not implemented yet; run with --compile-only");
        return ExitCode::from(2);
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
        println!("{:<5} {:<13} {:<16} {:>6} ms {:>8} bytes", if o.ok { "ok" } else { "FAIL" }, o.module, o.target, o.millis, o.bytes);
        if !o.problem.is_empty() {
            for l in o.problem.lines().take(40) {
                println!("      {l}");
            }
        }
        failed += usize::from(!o.ok);
    }
    println!("gpu-check: {} compiled, {} failed, in {:.1} s", outcomes.len() - failed, failed, total.as_secs_f64());
    if let Some(f) = json {
        if let Err(e) = std::fs::write(&f, check::report_json((maj, min), total.as_secs_f64(), &outcomes)) {
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
    eprintln!("gpu-check: {msg}\nusage: gpu-check [--compile-only] [--json FILE]");
    ExitCode::from(64)
}
