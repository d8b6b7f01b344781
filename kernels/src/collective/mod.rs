//! The collective layer: Gloo (Debian's libgloo, PyTorch's CPU collective library) behind a small C++ shim
//! (`shim.cc`, compiled by `build.rs` with the `cc` crate). Plain Rust, no Node types: `crate::napi::collective`
//! exposes it to JS, and `Model::{allreduce_grads, sharded_step, gather_optimizer_state}` use it.
//!
//! A `Collective` is one rank of a group of `size` ranks: connected through a rendezvous in Redis (the peers'
//! TCP addresses under `<prefix>/<rank>`, with a time-to-live), then a full mesh of TCP pairs. Every operation
//! blocks the calling thread until it completes or fails; each is bounded by the group's timeout. Operations
//! must be issued in the same order on every rank and one at a time per `Collective` (`&mut self`). After a
//! failure the group is not reusable (`Collective` reports it as broken): form a new one under a new prefix.
use crate::error::{Error, ErrorCode, Result};
use std::ffi::{c_char, c_int, c_void, CString};

#[allow(non_camel_case_types)]
#[repr(C)]
struct spark_coll {
    _private: [u8; 0],
}

extern "C" {
    fn spark_coll_connect(
        host: *const c_char,
        port: c_int,
        user: *const c_char,
        password: *const c_char,
        db: c_int,
        prefix: *const c_char,
        rank: c_int,
        size: c_int,
        hostname: *const c_char,
        timeout_ms: i64,
        out: *mut *mut spark_coll,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_free(c: *mut spark_coll);
    fn spark_coll_broadcast(
        c: *mut spark_coll,
        data: *mut c_void,
        bytes: usize,
        root: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_allreduce_f32(
        c: *mut spark_coll,
        data: *mut f32,
        n: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_allreduce_f64(
        c: *mut spark_coll,
        data: *mut f64,
        n: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_reduce_scatter_f32(
        c: *mut spark_coll,
        data: *mut f32,
        n: usize,
        counts: *const c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_allgatherv_f32(
        c: *mut spark_coll,
        input: *const f32,
        out: *mut f32,
        counts: *const usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn spark_coll_barrier(c: *mut spark_coll, err: *mut c_char, errlen: usize) -> c_int;
}

/// Most ranks in a group.
pub const MAX_WORLD: usize = 4096;
/// Longest rendezvous timeout (1 hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most bytes one `broadcast_bytes` carries (1 GiB).
pub const MAX_BROADCAST_BYTES: usize = 1 << 30;
/// Most elements of one reduce-scatter (Gloo's halving-doubling algorithm counts in `int`).
pub const MAX_REDUCE_SCATTER: usize = i32::MAX as usize;

/// Where and how to rendezvous.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub redis_host: String,
    pub redis_port: u16,
    /// Redis ACL user (empty: `AUTH <password>` only).
    pub redis_user: String,
    /// Empty: no AUTH.
    pub redis_password: String,
    pub redis_db: u32,
    pub prefix: String,
    pub rank: usize,
    pub world_size: usize,
    pub timeout_ms: u64,
    /// The address peers dial for this rank (the port is ephemeral).
    pub hostname: String,
}

/// One rank's membership of a connected group.
pub struct Collective {
    ptr: *mut spark_coll,
    rank: usize,
    size: usize,
}

// SAFETY: the shim's state is used by one thread at a time (`&mut self` on every operation); Gloo's own
// background thread is internal to it.
unsafe impl Send for Collective {}
unsafe impl Sync for Collective {}

const ERR_LEN: usize = 2048;

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} must not contain NUL")))
}

fn status(rc: c_int, buf: &[u8], during: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let msg = format!("{during}: {}", String::from_utf8_lossy(&buf[..end]));
    let code = match rc {
        1 => ErrorCode::CollectiveTimeout,
        2 => ErrorCode::CollectivePeerLost,
        3 => ErrorCode::InvalidInput,
        4 => ErrorCode::CollectiveStore,
        _ => ErrorCode::CollectiveFailed,
    };
    Err(Error::new(code, msg))
}

/// Runs a shim call with an error buffer.
fn call(during: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut buf = vec![0u8; ERR_LEN];
    let rc = f(buf.as_mut_ptr() as *mut c_char, ERR_LEN);
    status(rc, &buf, during)
}

/// Balanced contiguous partition of `n` elements over `size` ranks: rank r owns [r·n/size, (r+1)·n/size).
pub fn shard_ranges(n: usize, size: usize) -> Vec<std::ops::Range<usize>> {
    (0..size)
        .map(|r| (r * n / size)..((r + 1) * n / size))
        .collect()
}

impl Collective {
    /// Joins the group (blocks until every rank has joined or the timeout passes: `CollectiveTimeout`
    /// naming the missing ranks).
    pub fn connect(o: &ConnectOptions) -> Result<Collective> {
        if o.world_size == 0 || o.world_size > MAX_WORLD {
            return Err(Error::invalid(format!(
                "worldSize must be in [1, {MAX_WORLD}], got {}",
                o.world_size
            )));
        }
        if o.rank >= o.world_size {
            return Err(Error::invalid(format!(
                "rank must be in [0, {}), got {}",
                o.world_size, o.rank
            )));
        }
        if o.timeout_ms == 0 || o.timeout_ms > MAX_TIMEOUT_MS {
            return Err(Error::invalid(format!(
                "timeoutMs must be in [1, {MAX_TIMEOUT_MS}], got {}",
                o.timeout_ms
            )));
        }
        if o.prefix.is_empty() || o.prefix.len() > 512 {
            return Err(Error::invalid("prefix must be 1..=512 bytes"));
        }
        if o.hostname.is_empty() || o.hostname.len() > 255 {
            return Err(Error::invalid("hostname must be 1..=255 bytes"));
        }
        let (host, user, pass, prefix, hostname) = (
            cstring(&o.redis_host, "redis host")?,
            cstring(&o.redis_user, "redis user")?,
            cstring(&o.redis_password, "redis password")?,
            cstring(&o.prefix, "prefix")?,
            cstring(&o.hostname, "hostname")?,
        );
        let mut ptr: *mut spark_coll = std::ptr::null_mut();
        call("collective rendezvous", |err, len| unsafe {
            spark_coll_connect(
                host.as_ptr(),
                o.redis_port as c_int,
                user.as_ptr(),
                pass.as_ptr(),
                o.redis_db as c_int,
                prefix.as_ptr(),
                o.rank as c_int,
                o.world_size as c_int,
                hostname.as_ptr(),
                o.timeout_ms as i64,
                &mut ptr,
                err,
                len,
            )
        })?;
        if ptr.is_null() {
            return Err(Error::new(
                ErrorCode::CollectiveFailed,
                "collective rendezvous returned no context",
            ));
        }
        Ok(Collective {
            ptr,
            rank: o.rank,
            size: o.world_size,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn size(&self) -> usize {
        self.size
    }

    /// Broadcasts `buf` from `root` in place (every rank passes a buffer of the same length).
    pub fn broadcast(&mut self, buf: &mut [u8], root: usize) -> Result<()> {
        if root >= self.size {
            return Err(Error::invalid(format!(
                "root must be in [0, {}), got {root}",
                self.size
            )));
        }
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let p = self.ptr;
        call("broadcast", |e, l| unsafe {
            spark_coll_broadcast(
                p,
                buf.as_mut_ptr() as *mut c_void,
                buf.len(),
                root as c_int,
                e,
                l,
            )
        })
    }

    /// Broadcasts a byte string of any length from `root`: the length first, then the bytes. `data` is
    /// used on the root only.
    pub fn broadcast_bytes(&mut self, data: Option<Vec<u8>>, root: usize) -> Result<Vec<u8>> {
        let is_root = self.rank == root;
        let mut len = [0u8; 8];
        if is_root {
            let d = data
                .as_ref()
                .ok_or_else(|| Error::invalid("the root of a broadcast must give data"))?;
            if d.len() > MAX_BROADCAST_BYTES {
                return Err(Error::invalid(format!(
                    "broadcast of {} bytes exceeds the limit {MAX_BROADCAST_BYTES}",
                    d.len()
                )));
            }
            len = (d.len() as u64).to_le_bytes();
        }
        self.broadcast(&mut len, root)?;
        let n = u64::from_le_bytes(len) as usize;
        if n > MAX_BROADCAST_BYTES {
            return Err(Error::new(
                ErrorCode::CollectiveFailed,
                format!("broadcast length {n} from rank {root} exceeds the limit"),
            ));
        }
        let mut buf = if is_root {
            data.unwrap_or_default()
        } else {
            vec![0u8; n]
        };
        self.broadcast(&mut buf, root)?;
        Ok(buf)
    }

    /// Elementwise sum across ranks, in place.
    pub fn allreduce_f32(&mut self, data: &mut [f32]) -> Result<()> {
        if self.size == 1 || data.is_empty() {
            return Ok(());
        }
        let p = self.ptr;
        call("all-reduce", |e, l| unsafe {
            spark_coll_allreduce_f32(p, data.as_mut_ptr(), data.len(), e, l)
        })
    }

    pub fn allreduce_f64(&mut self, data: &mut [f64]) -> Result<()> {
        if self.size == 1 || data.is_empty() {
            return Ok(());
        }
        let p = self.ptr;
        call("all-reduce", |e, l| unsafe {
            spark_coll_allreduce_f64(p, data.as_mut_ptr(), data.len(), e, l)
        })
    }

    /// Sums `data` across ranks and leaves this rank's shard (`shard_ranges(data.len(), size)[rank]`) at the
    /// start of `data`; the rest of `data` is clobbered. Returns the shard's length.
    pub fn reduce_scatter_f32(&mut self, data: &mut [f32]) -> Result<usize> {
        let ranges = shard_ranges(data.len(), self.size);
        let mine = ranges[self.rank].len();
        if self.size == 1 {
            return Ok(mine);
        }
        if data.len() > MAX_REDUCE_SCATTER {
            return Err(Error::invalid(format!(
                "reduce-scatter of {} elements exceeds {MAX_REDUCE_SCATTER}",
                data.len()
            )));
        }
        let counts: Vec<c_int> = ranges.iter().map(|r| r.len() as c_int).collect();
        let p = self.ptr;
        call("reduce-scatter", |e, l| unsafe {
            spark_coll_reduce_scatter_f32(p, data.as_mut_ptr(), data.len(), counts.as_ptr(), e, l)
        })?;
        Ok(mine)
    }

    /// Every rank's shard (`shard_ranges(out.len(), size)`) into `out`; `mine` is this rank's shard.
    pub fn allgather_f32(&mut self, mine: &[f32], out: &mut [f32]) -> Result<()> {
        let ranges = shard_ranges(out.len(), self.size);
        if mine.len() != ranges[self.rank].len() {
            return Err(Error::invalid(format!(
                "all-gather: shard has {} values, expected {}",
                mine.len(),
                ranges[self.rank].len()
            )));
        }
        if self.size == 1 {
            out.copy_from_slice(mine);
            return Ok(());
        }
        let counts: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        let p = self.ptr;
        call("all-gather", |e, l| unsafe {
            spark_coll_allgatherv_f32(p, mine.as_ptr(), out.as_mut_ptr(), counts.as_ptr(), e, l)
        })
    }

    pub fn barrier(&mut self) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let p = self.ptr;
        call("barrier", |e, l| unsafe { spark_coll_barrier(p, e, l) })
    }
}

impl Drop for Collective {
    fn drop(&mut self) {
        // SAFETY: ptr came from spark_coll_connect and is freed once.
        unsafe { spark_coll_free(self.ptr) }
    }
}

#[cfg(test)]
mod tests;
