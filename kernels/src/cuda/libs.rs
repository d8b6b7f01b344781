//! Finding the CUDA libraries at run time, and the device check a `cuda:N` model starts with.
//!
//! Nothing CUDA is linked: the driver (`libcuda.so.1`), NVRTC (`libnvrtc.so.13`, else `.12`) and cuBLASLt
//! (`libcublasLt.so.13`, else `.12`) are opened with `dlopen` when first needed, so the addon builds and loads
//! on machines without CUDA. Search order, for each library:
//!
//! 1. every directory of `SPARK_CUDA_LIB_DIR` (`:`-separated), and below each its `nvidia/*/lib`
//!    directories — so a Python `site-packages` (PyTorch's environment, or a venv with the `nvidia-*` wheels:
//!    `nvidia/cu13/lib`, `nvidia/cuda_nvrtc/lib`, …) can be named as it is;
//! 2. the system loader's path (`LD_LIBRARY_PATH`, `/etc/ld.so.cache`): the CUDA container images and the
//!    NVIDIA container runtime (which mounts the driver) put them there.
//!
//! A file found in step 1 is opened by its path (RTLD_GLOBAL) and kept open, so a later `dlopen` by soname
//! (cudarc's, for the driver and cuBLASLt) gets that same library. A file that exists but does not load is an
//! error naming the file, not a silent fall-through.
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

use crate::error::{Error, ErrorCode, Result};

/// The environment variable naming extra library directories.
pub const LIB_DIR_ENV: &str = "SPARK_CUDA_LIB_DIR";
/// At most this many directories are searched (the variable and its `nvidia/*/lib` expansion together).
const MAX_DIRS: usize = 64;

/// A library the CUDA backend needs.
#[derive(Clone, Copy, Debug)]
pub struct LibSpec {
    pub what: &'static str,
    /// File names in order of preference.
    pub names: &'static [&'static str],
    /// What to install when it is missing.
    pub hint: &'static str,
}

pub const DRIVER: LibSpec = LibSpec {
    what: "CUDA driver",
    names: &["libcuda.so.1"],
    hint: "install the NVIDIA driver (>= 580 for CUDA 13); in a container, run it with the NVIDIA container runtime, which mounts the driver",
};
pub const NVRTC: LibSpec = LibSpec {
    what: "NVRTC (the CUDA runtime compiler)",
    names: &["libnvrtc.so.13", "libnvrtc.so.12"],
    hint: "pip install nvidia-cuda-nvrtc==13.0.88 (or use the CUDA image / PyTorch's environment) and set SPARK_CUDA_LIB_DIR to its site-packages",
};
pub const CUBLASLT: LibSpec = LibSpec {
    what: "cuBLASLt",
    names: &["libcublasLt.so.13", "libcublasLt.so.12"],
    hint: "pip install nvidia-cublas (or use the CUDA image / PyTorch's environment) and set SPARK_CUDA_LIB_DIR to its site-packages",
};

/// Libraries opened by path stay loaded for the life of the process (cudarc and the kernels use them).
static KEPT: Mutex<Vec<Library>> = Mutex::new(Vec::new());

fn keep(lib: Library) {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(lib);
}

/// The directories searched before the system path: each entry of `value` (`SPARK_CUDA_LIB_DIR`), then its
/// `nvidia/*/lib` subdirectories (sorted), at most `MAX_DIRS` in all.
pub fn search_dirs(value: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in value.unwrap_or("").split(':').filter(|s| !s.is_empty()) {
        let dir = PathBuf::from(entry);
        out.push(dir.clone());
        if let Ok(rd) = std::fs::read_dir(dir.join("nvidia")) {
            let mut subs: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("lib"))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            out.extend(subs);
        }
    }
    out.truncate(MAX_DIRS);
    out
}

/// The directories of `SPARK_CUDA_LIB_DIR` as `search_dirs` expands them.
pub fn env_dirs() -> Vec<PathBuf> {
    search_dirs(std::env::var(LIB_DIR_ENV).ok().as_deref())
}

/// Where a library was found, or why it was not.
#[derive(Clone, Debug, PartialEq)]
pub struct LibStatus {
    pub what: &'static str,
    /// The file opened, or `"<soname> (system loader path)"`.
    pub found: Option<String>,
    /// Why it is missing (names, places searched, what to install); None when found.
    pub error: Option<String>,
}

/// A dlopen error with the loader's own description (libloading's Display omits it).
fn dl_error(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

/// Finds and opens (keeps open) the library `spec` in `dirs`, then on the system path.
pub fn locate(spec: &LibSpec, dirs: &[PathBuf]) -> LibStatus {
    match open_lib(spec, dirs) {
        Ok((where_, lib)) => {
            keep(lib);
            LibStatus {
                what: spec.what,
                found: Some(where_),
                error: None,
            }
        }
        Err(e) => LibStatus {
            what: spec.what,
            found: None,
            error: Some(e),
        },
    }
}

/// Opens `spec` without keeping it (the caller owns the handle: NVRTC's symbol table).
pub fn open_lib(
    spec: &LibSpec,
    dirs: &[PathBuf],
) -> std::result::Result<(String, Library), String> {
    for dir in dirs {
        for name in spec.names {
            let p = dir.join(name);
            if p.exists() {
                // SAFETY: loading a CUDA library runs its initialisers; these are NVIDIA's libraries, which
                // are safe to load into any process (they do not start threads or touch state on load).
                return match unsafe { Library::open(Some(&p), RTLD_NOW | RTLD_GLOBAL) } {
                    Ok(lib) => Ok((p.display().to_string(), lib)),
                    Err(e) => Err(format!(
                        "{} at {} could not be loaded: {}",
                        spec.what,
                        p.display(),
                        dl_error(&e)
                    )),
                };
            }
        }
    }
    let mut first_err = None;
    for name in spec.names {
        // SAFETY: as above.
        match unsafe { Library::open(Some(*name), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(lib) => return Ok((format!("{name} (system loader path)"), lib)),
            Err(e) => {
                first_err.get_or_insert_with(|| dl_error(&e));
            }
        }
    }
    let searched = if dirs.is_empty() {
        format!("{LIB_DIR_ENV} unset")
    } else {
        format!(
            "{LIB_DIR_ENV}: {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(format!(
        "{} library not found: looked for {} in {searched} and on the system loader path (LD_LIBRARY_PATH, ld.so.cache; {}); {}",
        spec.what,
        spec.names.join(" / "),
        first_err.unwrap_or_default(),
        spec.hint
    ))
}

/// One CUDA device as the driver reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub ordinal: u32,
    pub name: String,
    /// Compute capability, e.g. (9, 0) for an H100.
    pub capability: (u32, u32),
    pub total_memory: u64,
    /// `cudaDevAttrMaxSharedMemoryPerBlockOptin`: the shared memory a kernel may opt in to, in bytes.
    pub max_shared_per_block_optin: u32,
    pub multiprocessors: u32,
}

/// What this machine has for the CUDA backend (`spark doctor`, and the check before a `cuda:N` model).
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub lib_dirs: Vec<String>,
    pub driver: LibStatus,
    pub nvrtc: LibStatus,
    pub cublaslt: LibStatus,
    /// `cuDriverGetVersion`, e.g. 13000 for CUDA 13.0; None when the driver is missing or failed.
    pub driver_version: Option<i32>,
    /// NVRTC's (major, minor).
    pub nvrtc_version: Option<(i32, i32)>,
    pub devices: Vec<DeviceInfo>,
    /// `cuInit` or a device query failed (with the driver's error name).
    pub driver_error: Option<String>,
}

fn driver_err(what: &str, e: cudarc::driver::DriverError) -> String {
    let name = e
        .error_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e
        .error_string()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{what} failed: {name} ({text})")
}

/// Looks for the libraries in `dirs` and on the system path, and asks the driver (when it loaded) for its
/// version and devices. Never panics for a missing library: cudarc's loaders are only reached after the
/// library was found here.
pub fn probe_in(dirs: &[PathBuf]) -> Probe {
    let driver = locate(&DRIVER, dirs);
    let nvrtc = locate(&NVRTC, dirs);
    let cublaslt = locate(&CUBLASLT, dirs);
    let nvrtc_version = if nvrtc.found.is_some() {
        crate::cuda::nvrtc::Nvrtc::load(dirs)
            .ok()
            .map(|n| n.version())
    } else {
        None
    };
    let mut p = Probe {
        lib_dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
        driver,
        nvrtc,
        cublaslt,
        driver_version: None,
        nvrtc_version,
        devices: Vec::new(),
        driver_error: None,
    };
    if p.driver.found.is_none() {
        return p;
    }
    // SAFETY (all unsafe below): the driver library is loaded (above), so cudarc's symbol lookups succeed;
    // the functions are called with valid out-pointers and devices the driver returned.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        p.driver_error = Some(
            "the driver library loaded by path is not visible by its soname (libcuda.so.1)".into(),
        );
        return p;
    }
    if let Err(e) = cudarc::driver::result::init() {
        p.driver_error = Some(driver_err("cuInit", e));
        return p;
    }
    let mut v = 0i32;
    if unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
        .result()
        .is_ok()
    {
        p.driver_version = Some(v);
    }
    let count = match cudarc::driver::result::device::get_count() {
        Ok(n) => n.max(0) as u32,
        Err(e) => {
            p.driver_error = Some(driver_err("cuDeviceGetCount", e));
            return p;
        }
    };
    use cudarc::driver::sys::CUdevice_attribute as A;
    for ordinal in 0..count.min(super::device::MAX_CUDA_DEVICES) {
        let info = (|| -> std::result::Result<DeviceInfo, cudarc::driver::DriverError> {
            let dev = cudarc::driver::result::device::get(ordinal as i32)?;
            let attr = |a| {
                unsafe { cudarc::driver::result::device::get_attribute(dev, a) }
                    .map(|v| v.max(0) as u32)
            };
            Ok(DeviceInfo {
                ordinal,
                name: cudarc::driver::result::device::get_name(dev)?,
                capability: (
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
                ),
                total_memory: unsafe { cudarc::driver::result::device::total_mem(dev) }? as u64,
                max_shared_per_block_optin: attr(
                    A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                )?,
                multiprocessors: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            })
        })();
        match info {
            Ok(d) => p.devices.push(d),
            Err(e) => {
                p.driver_error = Some(driver_err(&format!("querying device {ordinal}"), e));
                break;
            }
        }
    }
    p
}

/// `probe_in` with the directories of `SPARK_CUDA_LIB_DIR`.
pub fn probe() -> Probe {
    probe_in(&env_dirs())
}

/// The oldest GPU architecture the kernels are built for (Ampere, sm_80).
pub const MIN_CAPABILITY: (u32, u32) = (8, 0);

/// Checks that `cuda:ordinal` can hold a model: every library present, the driver initialised, the device
/// present and at least sm_80. The error (`ERR_SPARK_CUDA_UNAVAILABLE`) names everything that is missing.
pub fn check_device(p: &Probe, ordinal: u32) -> Result<DeviceInfo> {
    let unavailable = |msg: String| {
        Error::new(
            ErrorCode::CudaUnavailable,
            format!("cuda:{ordinal} is unavailable: {msg}"),
        )
    };
    let missing: Vec<&str> = [&p.driver, &p.nvrtc, &p.cublaslt]
        .iter()
        .filter_map(|s| s.error.as_deref())
        .collect();
    if !missing.is_empty() {
        return Err(unavailable(missing.join("; ")));
    }
    if let Some(e) = &p.driver_error {
        return Err(unavailable(e.clone()));
    }
    let Some(d) = p.devices.iter().find(|d| d.ordinal == ordinal) else {
        return Err(unavailable(format!(
            "no CUDA device {ordinal}: the driver reports {} device(s){}",
            p.devices.len(),
            match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) => format!(
                    " (CUDA_VISIBLE_DEVICES={})",
                    v.chars().take(64).collect::<String>()
                ),
                Err(_) => String::new(),
            }
        )));
    };
    if d.capability < MIN_CAPABILITY {
        return Err(unavailable(format!(
            "{} has compute capability {}.{}; the kernels need sm_80 or newer",
            d.name, d.capability.0, d.capability.1
        )));
    }
    Ok(d.clone())
}

/// True when `path` names a regular file (used by tests and `spark doctor` to show what was found).
pub fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spark-cuda-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn search_dirs_expands_site_packages() {
        let d = tmpdir("dirs");
        std::fs::create_dir_all(d.join("nvidia/cu13/lib")).unwrap();
        std::fs::create_dir_all(d.join("nvidia/cublas/lib")).unwrap();
        std::fs::create_dir_all(d.join("nvidia/nolib")).unwrap();
        let v = format!("{}::/nonexistent", d.display());
        let dirs = search_dirs(Some(&v));
        assert_eq!(
            dirs,
            vec![
                d.clone(),
                d.join("nvidia/cu13/lib"),
                d.join("nvidia/cublas/lib"),
                PathBuf::from("/nonexistent")
            ]
        );
        assert!(search_dirs(None).is_empty());
        assert!(search_dirs(Some("")).is_empty());
        let many = vec!["/x"; 500].join(":");
        assert_eq!(search_dirs(Some(&many)).len(), MAX_DIRS);
    }

    #[test]
    fn a_library_file_that_does_not_load_is_named() {
        let d = tmpdir("broken");
        std::fs::write(d.join("libcuda.so.1"), b"not an ELF file").unwrap();
        let s = locate(&DRIVER, &[d.clone()]);
        assert_eq!(s.found, None);
        let e = s.error.unwrap();
        assert!(
            e.contains(&d.join("libcuda.so.1").display().to_string())
                && e.contains("could not be loaded"),
            "{e}"
        );
    }

    /// This machine has no NVIDIA driver (CI's and the developers' machines have none): the probe says so and
    /// a `cuda:0` model is refused with the named code and what is missing, without a panic.
    #[test]
    fn missing_driver_is_a_named_error() {
        if unsafe { Library::open(Some("libcuda.so.1"), RTLD_NOW) }.is_ok() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let p = probe_in(&[]);
        assert_eq!(p.driver.found, None);
        let msg = p.driver.error.clone().unwrap();
        assert!(
            msg.contains("libcuda.so.1") && msg.contains("NVIDIA driver"),
            "{msg}"
        );
        assert!(p.devices.is_empty() && p.driver_version.is_none());
        let e = check_device(&p, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::CudaUnavailable);
        assert_eq!(e.code.code(), "ERR_SPARK_CUDA_UNAVAILABLE");
        assert!(
            e.message
                .starts_with("cuda:0 is unavailable: CUDA driver library not found"),
            "{}",
            e.message
        );
        assert!(e.message.contains("libcuda.so.1"), "{}", e.message);
    }

    #[test]
    fn device_checks_name_the_missing_device_and_old_gpus() {
        let ok = |what| LibStatus {
            what,
            found: Some("x".into()),
            error: None,
        };
        let dev = |ordinal, capability| DeviceInfo {
            ordinal,
            name: "GPU".into(),
            capability,
            total_memory: 80 << 30,
            max_shared_per_block_optin: 232_448,
            multiprocessors: 132,
        };
        let mut p = Probe {
            lib_dirs: vec![],
            driver: ok("CUDA driver"),
            nvrtc: ok("NVRTC"),
            cublaslt: ok("cuBLASLt"),
            driver_version: Some(13000),
            nvrtc_version: Some((13, 0)),
            devices: vec![dev(0, (9, 0)), dev(1, (7, 5))],
            driver_error: None,
        };
        assert_eq!(check_device(&p, 0).unwrap().capability, (9, 0));
        let e = check_device(&p, 2).unwrap_err();
        assert!(
            e.message
                .contains("no CUDA device 2: the driver reports 2 device(s)"),
            "{}",
            e.message
        );
        let e = check_device(&p, 1).unwrap_err();
        assert!(
            e.message.contains("compute capability 7.5"),
            "{}",
            e.message
        );
        p.nvrtc = LibStatus {
            what: "NVRTC",
            found: None,
            error: Some("NVRTC library not found".into()),
        };
        p.cublaslt = LibStatus {
            what: "cuBLASLt",
            found: None,
            error: Some("cuBLASLt library not found".into()),
        };
        let e = check_device(&p, 0).unwrap_err();
        assert!(
            e.message
                .contains("NVRTC library not found; cuBLASLt library not found"),
            "{}",
            e.message
        );
        p.nvrtc = ok("NVRTC");
        p.cublaslt = ok("cuBLASLt");
        p.driver_error = Some("cuInit failed: CUDA_ERROR_NO_DEVICE".into());
        assert!(check_device(&p, 0)
            .unwrap_err()
            .message
            .contains("CUDA_ERROR_NO_DEVICE"));
    }
}
