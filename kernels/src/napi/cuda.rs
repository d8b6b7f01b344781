//! `cudaProbe`: what this machine has for the CUDA backend — the libraries found (and where) or why not, the
//! driver's version and its devices — for `spark doctor` and for users checking a GPU node.
use napi_derive::napi;

use super::error::{guard, Result};
use crate::cuda::libs;

/// One library: where it was found, or why it was not (names, places searched, what to install).
#[napi(object)]
pub struct NativeCudaLib {
    pub what: String,
    pub found: Option<String>,
    pub error: Option<String>,
}

#[napi(object)]
pub struct NativeCudaDevice {
    pub ordinal: u32,
    pub name: String,
    /// e.g. "9.0"
    pub capability: String,
    pub total_memory_bytes: f64,
    pub multiprocessors: u32,
}

#[napi(object)]
pub struct NativeCudaProbe {
    /// The directories searched before the system path (SPARK_CUDA_LIB_DIR, expanded).
    pub lib_dirs: Vec<String>,
    pub driver: NativeCudaLib,
    pub nvrtc: NativeCudaLib,
    pub cublas_lt: NativeCudaLib,
    /// e.g. "13.0"; null when the driver is missing or failed.
    pub driver_version: Option<String>,
    pub nvrtc_version: Option<String>,
    pub devices: Vec<NativeCudaDevice>,
    /// cuInit or a device query failed (the driver's error name and text).
    pub driver_error: Option<String>,
}

fn lib(s: libs::LibStatus) -> NativeCudaLib {
    NativeCudaLib {
        what: s.what.to_string(),
        found: s.found,
        error: s.error,
    }
}

/// Looks for the CUDA driver, NVRTC and cuBLASLt (SPARK_CUDA_LIB_DIR, then the system path) and lists the
/// driver's devices. Synchronous (a few dlopen calls and cuInit); never throws for a missing library.
#[napi]
pub fn cuda_probe() -> Result<NativeCudaProbe> {
    guard("cudaProbe", || {
        let p = libs::probe();
        Ok(NativeCudaProbe {
            lib_dirs: p.lib_dirs,
            driver: lib(p.driver),
            nvrtc: lib(p.nvrtc),
            cublas_lt: lib(p.cublaslt),
            driver_version: p
                .driver_version
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
            nvrtc_version: p.nvrtc_version.map(|(a, b)| format!("{a}.{b}")),
            devices: p
                .devices
                .into_iter()
                .map(|d| NativeCudaDevice {
                    ordinal: d.ordinal,
                    name: d.name,
                    capability: format!("{}.{}", d.capability.0, d.capability.1),
                    total_memory_bytes: d.total_memory as f64,
                    multiprocessors: d.multiprocessors,
                })
                .collect(),
            driver_error: p.driver_error,
        })
    })
}
