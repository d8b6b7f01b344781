//! The compile half of `pnpm gpu:check` (`kernels/gpu-check/`): every module of `sources::MODULES` compiled
//! by NVRTC — the same `Nvrtc::compile` the CUDA backend runs at load — to cubins for `CUBIN_ARCHS` and PTX
//! for `PTX_ARCH`. Any error, any warning in NVRTC's log (ptxas' register-spill warnings included), or a listed
//! kernel missing from the compiled PTX fails the check. Needs NVRTC only, no GPU.
use std::time::Instant;

use crate::cuda::nvrtc::{Nvrtc, Target};
use crate::cuda::sources::{CUBIN_ARCHS, HEADERS, MODULES, PTX_ARCH};

/// Options of the check on top of the production options: ptxas warns on register spills.
pub const CHECK_OPTIONS: &[&str] = &["--ptxas-options=--warn-on-spills"];

/// The outcome of compiling one module for one target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompileOutcome {
    pub module: &'static str,
    pub target: String,
    pub ok: bool,
    pub millis: u64,
    pub bytes: usize,
    /// The error, the warnings, or the kernels missing from the PTX; empty when clean.
    pub problem: String,
}

/// True when NVRTC's log has a warning or an error line (an informational log passes).
pub fn log_has_problem(log: &str) -> bool {
    log.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("warning") || l.contains("error")
    })
}

/// Compiles every module for every target.
pub fn compile_all(nvrtc: &Nvrtc) -> Vec<CompileOutcome> {
    let mut targets: Vec<Target> = CUBIN_ARCHS.iter().map(|&a| Target::Cubin(a)).collect();
    targets.push(Target::Ptx(PTX_ARCH));
    MODULES
        .iter()
        .flat_map(|m| {
            targets
                .iter()
                .map(move |&t| check_one(nvrtc, m.name, m.source, m.kernels, t))
        })
        .collect()
}

/// Compiles one module for one target and judges it: no error, no warning, every kernel in the PTX.
pub fn check_one(
    nvrtc: &Nvrtc,
    name: &'static str,
    source: &str,
    kernels: &[&str],
    t: Target,
) -> CompileOutcome {
    let start = Instant::now();
    let r = nvrtc.compile(name, source, HEADERS, t, CHECK_OPTIONS);
    let millis = start.elapsed().as_millis() as u64;
    let (ok, bytes, problem) = match r {
        Err(e) => (false, 0, e.message),
        Ok(c) => {
            let mut problems = Vec::new();
            if log_has_problem(&c.log) {
                problems.push(c.log.clone());
            }
            if let Target::Ptx(_) = t {
                let ptx = String::from_utf8_lossy(&c.binary);
                let missing: Vec<&str> = kernels
                    .iter()
                    .copied()
                    .filter(|k| !ptx.contains(&format!(".entry {k}(")))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "kernels missing from the PTX: {}",
                        missing.join(", ")
                    ));
                }
            }
            if c.binary.is_empty() {
                problems.push("empty output".into());
            }
            (problems.is_empty(), c.binary.len(), problems.join("\n"))
        }
    };
    CompileOutcome {
        module: name,
        target: t.to_string(),
        ok,
        millis,
        bytes,
        problem,
    }
}

/// The check's JSON report (`--json FILE`).
pub fn report_json(nvrtc: (i32, i32), seconds: f64, outcomes: &[CompileOutcome]) -> String {
    let doc = serde_json::json!({
        "nvrtc": format!("{}.{}", nvrtc.0, nvrtc.1),
        "seconds": seconds,
        "ok": outcomes.iter().all(|o| o.ok),
        "compiles": outcomes,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_in_the_log_are_problems() {
        assert!(!log_has_problem(""));
        assert!(!log_has_problem("ptxas info    : Used 40 registers"));
        assert!(log_has_problem(
            "attention.cu(12): warning #177-D: variable \"x\" was declared but never referenced"
        ));
        assert!(log_has_problem(
            "ptxas warning : Registers are spilled to local memory in function 'f'"
        ));
        assert!(log_has_problem(
            "x.cu(3): error: identifier \"y\" is undefined"
        ));
    }

    /// Every kernel compiles cleanly for every target — what `pnpm gpu:check --compile-only` checks in CI
    /// (about a minute, so ignored here: `cargo test --release -- --ignored` with SPARK_CUDA_LIB_DIR set).
    #[test]
    #[ignore = "slow; .ci/run runs the same through gpu:check --compile-only"]
    fn every_kernel_compiles_when_nvrtc_is_present() {
        let Ok(nvrtc) = Nvrtc::load(&crate::cuda::libs::env_dirs()) else {
            eprintln!("skipped: NVRTC not found (set SPARK_CUDA_LIB_DIR)");
            return;
        };
        let bad: Vec<_> = compile_all(&nvrtc).into_iter().filter(|o| !o.ok).collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }

    /// The check fails a module with a warning, an error, or a listed kernel that is not defined.
    #[test]
    fn the_check_fails_warnings_errors_and_missing_kernels() {
        let Ok(nvrtc) = Nvrtc::load(&crate::cuda::libs::env_dirs()) else {
            eprintln!("skipped: NVRTC not found (set SPARK_CUDA_LIB_DIR)");
            return;
        };
        let clean = "#include \"common.cuh\"\nextern \"C\" __global__ void k(float* x) { x[threadIdx.x] = to_f(x[0]); }\n";
        let ok = check_one(&nvrtc, "t.cu", clean, &["k"], Target::Ptx(80));
        assert!(ok.ok, "{ok:?}");
        let warn = "extern \"C\" __global__ void k(float* x) { int unused = 3; x[0] = 1.f; }\n";
        let w = check_one(&nvrtc, "t.cu", warn, &["k"], Target::Cubin(90));
        assert!(!w.ok && w.problem.contains("warning"), "{w:?}");
        let err = "extern \"C\" __global__ void k(float* x) { x[0] = y; }\n";
        let e = check_one(&nvrtc, "t.cu", err, &["k"], Target::Cubin(80));
        assert!(!e.ok && e.problem.contains("failed to compile"), "{e:?}");
        let m = check_one(&nvrtc, "t.cu", clean, &["k", "absent"], Target::Ptx(80));
        assert!(
            !m.ok && m.problem.contains("missing from the PTX: absent"),
            "{m:?}"
        );
    }

    /// The disk cache: a second compile of the same source is a hit with the same bytes; a changed source is
    /// a miss with its own file.
    #[test]
    fn the_compile_cache_hits_on_the_same_source_only() {
        let Ok(nvrtc) = Nvrtc::load(&crate::cuda::libs::env_dirs()) else {
            eprintln!("skipped: NVRTC not found (set SPARK_CUDA_LIB_DIR)");
            return;
        };
        let dir = std::env::temp_dir().join(format!("spark-nvrtc-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] *= 2.f; }\n";
        let a = nvrtc
            .compile_cached(&dir, "c.cu", src, &[], Target::Cubin(80))
            .unwrap();
        let b = nvrtc
            .compile_cached(&dir, "c.cu", src, &[], Target::Cubin(80))
            .unwrap();
        assert!(!a.cached && b.cached && a.binary == b.binary && !a.binary.is_empty());
        let c = nvrtc
            .compile_cached(
                &dir,
                "c.cu",
                &src.replace("2.f", "3.f"),
                &[],
                Target::Cubin(80),
            )
            .unwrap();
        assert!(!c.cached && c.binary != a.binary);
        let d = nvrtc
            .compile_cached(&dir, "c.cu", src, &[], Target::Cubin(90))
            .unwrap();
        assert!(!d.cached, "another architecture is another entry");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
