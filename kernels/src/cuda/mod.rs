//! The CUDA backend's foundation (built, not yet verified on a GPU; see docs/kernels.md):
//!
//! - `device`: `cpu` | `cuda:N`;
//! - `libs`: finding the driver, NVRTC and cuBLASLt at run time (`SPARK_CUDA_LIB_DIR`, the system path), the
//!   probe `spark doctor` prints, and the check that turns a missing driver/library/device into
//!   `ERR_SPARK_CUDA_UNAVAILABLE`;
//! - `nvrtc`: compiling our kernels (`kernels/cuda/*.cu`, `sources`) at load time, with a disk cache;
//! - `launch`: grid/block/shared-memory of every kernel for a shape, checked against the architecture's limits;
//! - `plan`: device memory of a model (parameters, gradients, AdamW moments, activations, KV cache);
//! - `blaslt`: matrix products through cuBLASLt, row-major as the CPU's `sgemm` takes them, planned once per
//!   shape (BF16 in, FP32 accumulate and out; FP32 and TF32 for parity), checked and timed by the GPU check.
//!
//! Matrix products are not ours: they go through cuBLASLt.
pub mod blaslt;
pub mod check;
pub mod device;
pub mod gpu;
pub mod launch;
pub mod libs;
pub mod nvrtc;
pub mod plan;
pub mod sources;

pub use device::Device;

use crate::error::{Error, ErrorCode, Result};

/// Opens `device` for a model. `cpu` is always available. For `cuda:N` every library, the driver, the device
/// and its architecture are checked (`ERR_SPARK_CUDA_UNAVAILABLE` naming what is missing); when all are there,
/// the CUDA model itself is refused with the same code, because its forward/backward/sampling are not wired
/// to these kernels yet (issue 11: built, not yet verified on a GPU).
pub fn require(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(n) => {
            let p = libs::probe();
            let d = libs::check_device(&p, n)?;
            Err(Error::new(
                ErrorCode::CudaUnavailable,
                format!(
                    "cuda:{n} ({}, sm_{}{}) is present, but this build's CUDA model is not wired yet (the kernels compile; forward/backward/sampling on the device are not implemented): use device 'cpu'",
                    d.name, d.capability.0, d.capability.1
                ),
            ))
        }
    }
}
