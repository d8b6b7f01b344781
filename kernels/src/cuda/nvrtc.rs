//! NVRTC, the CUDA runtime compiler, loaded at run time: our kernels (`kernels/cuda/*.cu`, embedded with
//! `include_str!`) are compiled when a device is opened — to a cubin for the device's architecture — and the
//! result is cached on disk, keyed by a hash of the sources, the options and NVRTC's version
//! (`SPARK_CUDA_CACHE_DIR`, default `$XDG_CACHE_HOME/spark/cuda` or `~/.cache/spark/cuda`). The compile check
//! (`gpu-check --compile-only`) runs this same code for sm_80 and sm_90 cubins plus compute_80 PTX.
//!
//! The library is found as `libs::NVRTC` (`SPARK_CUDA_LIB_DIR`, then the system path) and its functions are
//! looked up from that handle directly, so the NVRTC used is exactly the one found (not another `libnvrtc.so`
//! earlier on the loader path).
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

use libloading::os::unix::Library;

use crate::cuda::libs::{self, NVRTC};
use crate::error::{Error, ErrorCode, Result};

type Prog = *mut std::ffi::c_void;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type CreateFn = unsafe extern "C" fn(
    *mut Prog,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileFn = unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Prog, *mut usize) -> c_int;
type GetFn = unsafe extern "C" fn(Prog, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Prog) -> c_int;
type ErrStrFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// NVRTC's entry points, from the library `libs::NVRTC` found.
pub struct Nvrtc {
    path: String,
    version: (i32, i32),
    create: CreateFn,
    compile: CompileFn,
    log_size: SizeFn,
    log: GetFn,
    cubin_size: SizeFn,
    cubin: GetFn,
    ptx_size: SizeFn,
    ptx: GetFn,
    destroy: DestroyFn,
    err_str: ErrStrFn,
    _lib: Library,
    _builtins: Option<Library>,
}

// SAFETY: NVRTC's API is thread-safe for distinct programs (NVIDIA documents concurrent use); the struct
// holds only function pointers into a library it keeps loaded.
unsafe impl Send for Nvrtc {}
unsafe impl Sync for Nvrtc {}

/// What to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// SASS for `sm_<arch>` (e.g. 80, 90).
    Cubin(u32),
    /// PTX for `compute_<arch>`, which the driver JIT-compiles for newer GPUs.
    Ptx(u32),
}

impl Target {
    pub fn option(self) -> String {
        match self {
            Target::Cubin(a) => format!("--gpu-architecture=sm_{a}"),
            Target::Ptx(a) => format!("--gpu-architecture=compute_{a}"),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cubin(a) => write!(f, "sm_{a} cubin"),
            Target::Ptx(a) => write!(f, "compute_{a} PTX"),
        }
    }
}

/// A compiled module: the binary (cubin, or PTX text with its NUL) and NVRTC's log (warnings).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub binary: Vec<u8>,
    pub log: String,
    /// True when this came from the disk cache.
    pub cached: bool,
}

/// The options every kernel is compiled with. No fast-math: the FP32 mode is compared with the CPU backend.
pub const BASE_OPTIONS: &[&str] = &[
    "-std=c++17",
    "--device-as-default-execution-space",
    "-default-device",
    "--restrict",
    "--fmad=true",
];

fn unavailable(msg: String) -> Error {
    Error::new(ErrorCode::CudaUnavailable, msg)
}

impl Nvrtc {
    /// Finds and opens NVRTC (`dirs`, then the system path).
    pub fn load(dirs: &[PathBuf]) -> Result<Nvrtc> {
        let (path, lib) = libs::open_lib(&NVRTC, dirs).map_err(unavailable)?;
        let builtins = load_builtins(Path::new(&path))?;
        // SAFETY: the symbols are NVRTC's documented C API with these exact signatures.
        unsafe {
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes())
                        .map_err(|e| unavailable(format!("{path} lacks {}: {e}", $name)))?
                };
            }
            let version_fn: VersionFn = sym!("nvrtcVersion");
            let mut n = Nvrtc {
                path: path.clone(),
                version: (0, 0),
                create: sym!("nvrtcCreateProgram"),
                compile: sym!("nvrtcCompileProgram"),
                log_size: sym!("nvrtcGetProgramLogSize"),
                log: sym!("nvrtcGetProgramLog"),
                cubin_size: sym!("nvrtcGetCUBINSize"),
                cubin: sym!("nvrtcGetCUBIN"),
                ptx_size: sym!("nvrtcGetPTXSize"),
                ptx: sym!("nvrtcGetPTX"),
                destroy: sym!("nvrtcDestroyProgram"),
                err_str: sym!("nvrtcGetErrorString"),
                _lib: lib,
                _builtins: builtins,
            };
            let (mut major, mut minor) = (0, 0);
            if version_fn(&mut major, &mut minor) == 0 {
                n.version = (major, minor);
            }
            Ok(n)
        }
    }

    /// NVRTC's (major, minor) version.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// Where the library was found.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, what: &str, code: c_int) -> Error {
        // SAFETY: nvrtcGetErrorString returns a static string for any code.
        let s = unsafe { CStr::from_ptr((self.err_str)(code)) }
            .to_string_lossy()
            .into_owned();
        Error::model(format!("NVRTC {what}: {s}"))
    }

    /// Compiles `source` (named `name` in messages) with `headers` (include name, text) for `target`.
    /// A compile error is an `Error` carrying NVRTC's log; warnings come back in `Compiled::log`.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
        extra: &[&str],
    ) -> Result<Compiled> {
        let c =
            |s: &str| CString::new(s).map_err(|_| Error::invalid(format!("NUL byte in {name}")));
        let src = c(source)?;
        let cname = c(name)?;
        let hsrc: Vec<CString> = headers.iter().map(|h| c(h.1)).collect::<Result<_>>()?;
        let hname: Vec<CString> = headers.iter().map(|h| c(h.0)).collect::<Result<_>>()?;
        let hsrc_p: Vec<*const c_char> = hsrc.iter().map(|s| s.as_ptr()).collect();
        let hname_p: Vec<*const c_char> = hname.iter().map(|s| s.as_ptr()).collect();
        let opts: Vec<CString> = BASE_OPTIONS
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .map(c)
            .chain([c(&target.option())])
            .collect::<Result<_>>()?;
        let opts_p: Vec<*const c_char> = opts.iter().map(|s| s.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: every pointer is a live NUL-terminated string for the duration of the calls; the program is
        // destroyed on every path below; output buffers are sized by the matching *Size call.
        unsafe {
            let r = (self.create)(
                &mut prog,
                src.as_ptr(),
                cname.as_ptr(),
                headers.len() as c_int,
                hsrc_p.as_ptr(),
                hname_p.as_ptr(),
            );
            if r != 0 {
                return Err(self.err("nvrtcCreateProgram", r));
            }
            let compiled = (self.compile)(prog, opts_p.len() as c_int, opts_p.as_ptr());
            let log = {
                let mut n = 0usize;
                (self.log_size)(prog, &mut n);
                let mut buf = vec![0u8; n.max(1)];
                (self.log)(prog, buf.as_mut_ptr() as *mut c_char);
                String::from_utf8_lossy(
                    &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())],
                )
                .trim()
                .to_string()
            };
            let out = if compiled != 0 {
                Err(Error::model(format!(
                    "{name} ({target}) failed to compile:\n{log}"
                )))
            } else {
                let (size_fn, get_fn) = match target {
                    Target::Cubin(_) => (self.cubin_size, self.cubin),
                    Target::Ptx(_) => (self.ptx_size, self.ptx),
                };
                let mut n = 0usize;
                let r = size_fn(prog, &mut n);
                if r != 0 {
                    Err(self.err("get size", r))
                } else {
                    let mut binary = vec![0u8; n];
                    let r = get_fn(prog, binary.as_mut_ptr() as *mut c_char);
                    if r != 0 {
                        Err(self.err("get binary", r))
                    } else {
                        Ok(Compiled {
                            binary,
                            log,
                            cached: false,
                        })
                    }
                }
            };
            (self.destroy)(&mut prog);
            out
        }
    }

    /// `compile` through the disk cache `dir`: a hit returns the stored binary; a miss compiles and stores it
    /// (written to a temporary file, then renamed, so concurrent processes never see a partial file).
    pub fn compile_cached(
        &self,
        dir: &Path,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
    ) -> Result<Compiled> {
        let mut key = Fnv::new();
        key.add(name.as_bytes());
        key.add(source.as_bytes());
        for (n, h) in headers {
            key.add(n.as_bytes());
            key.add(h.as_bytes());
        }
        key.add(format!("{target:?}{:?}{:?}", BASE_OPTIONS, self.version).as_bytes());
        let file = dir.join(format!(
            "{}-{}-{:016x}.bin",
            name.replace(['/', '.'], "_"),
            target.option().trim_start_matches("--gpu-architecture="),
            key.0
        ));
        if let Ok(binary) = std::fs::read(&file) {
            if !binary.is_empty() {
                return Ok(Compiled {
                    binary,
                    log: String::new(),
                    cached: true,
                });
            }
        }
        let out = self.compile(name, source, headers, target, &[])?;
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &out.binary).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
        Ok(out)
    }
}

/// NVRTC opens `libnvrtc-builtins.so.<major>.<minor>` by name when it compiles; when NVRTC itself was found by
/// path (in `SPARK_CUDA_LIB_DIR`), the builtins beside it are opened first (RTLD_GLOBAL), so that lookup finds
/// them by soname without `LD_LIBRARY_PATH`. Found on the system path, NVRTC finds its builtins the same way.
fn load_builtins(nvrtc: &Path) -> Result<Option<Library>> {
    let Some(dir) = nvrtc.parent().filter(|d| nvrtc.is_absolute() && d.is_dir()) else {
        return Ok(None);
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut names: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc-builtins.so."))
        })
        .collect();
    names.sort();
    match names.first() {
        None => Ok(None),
        // SAFETY: NVIDIA's NVRTC builtins library, as NVRTC itself would load it.
        Some(p) => unsafe {
            Library::open(
                Some(p),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        }
        .map(Some)
        .map_err(|e| {
            unavailable(format!(
                "NVRTC's builtins {} could not be loaded: {e}",
                p.display()
            ))
        }),
    }
}

/// The compile cache directory: `SPARK_CUDA_CACHE_DIR`, else `$XDG_CACHE_HOME/spark/cuda`, else
/// `$HOME/.cache/spark/cuda`, else the temporary directory.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SPARK_CUDA_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("spark/cuda");
    }
    if let Some(d) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join(".cache/spark/cuda");
    }
    std::env::temp_dir().join("spark-cuda-cache")
}

/// FNV-1a, 64 bits: the cache key (not a security boundary: the cache directory is the user's own).
struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        // a separator, so ("ab", "c") and ("a", "bc") differ
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}
