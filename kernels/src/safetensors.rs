//! Safetensors files: our limits in front of the `safetensors` crate for reading (memory-mapped with
//! `memmap2`), F32/BF16/F16 → f32 conversion, and an F32/BF16 writer.
//!
//! File layout: 8 bytes little-endian `N`, then `N` bytes of UTF-8 JSON (padded with spaces), then the data
//! buffer. The JSON maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative
//! to the data buffer) plus an optional `"__metadata__"` string→string map.
//!
//! Reading distrusts every byte, in this order:
//! 1. our limits, before anything is mapped or parsed: the file is at least 8 and at most `MAX_FILE_BYTES`
//!    bytes; the header length is in `1..=MAX_HEADER_BYTES` and fits the file;
//! 2. our header check (`parse_header`, serde_json): a JSON object without duplicate keys (at any level that
//!    names something), at most `MAX_TENSORS` tensors with names ≤ `MAX_NAME_BYTES` and rank ≤ `MAX_RANK`,
//!    known dtypes, non-negative integer shapes and offsets, `end − begin` equal to `numel × dtype size`
//!    (overflow-checked), offsets inside the data buffer, and tensors that neither overlap nor leave holes or
//!    trailing bytes — each with a message naming the tensor and the problem;
//! 3. the `safetensors` crate parses the same mapped bytes (`SafeTensors::deserialize`, the reference
//!    implementation's rules) and hands out the tensor views the data is read through.
//!
//! The file is memory-mapped, so a read touches only the pages of the tensors asked for, and converts them
//! straight into the destination (in parallel blocks on the backend threads). A file truncated or rewritten
//! while mapped can fault (SIGBUS) like any mapped file; checkpoints are written to `*.tmp` and renamed, so a
//! reader never maps a file that is still being written.
use crate::backend::threads::par_rows;
use crate::error::{Error, Result};
use memmap2::Mmap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

pub use safetensors::tensor::TensorView;
pub use safetensors::{Dtype, SafeTensors};

/// Largest header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Largest file accepted: 64 GiB (the largest model this crate builds is 8 GiB of f32; a shard with other
/// tensors is larger but not by this much).
pub const MAX_FILE_BYTES: u64 = 64 << 30;
/// Most tensors in one file, and most dimensions in one shape.
pub const MAX_TENSORS: usize = 1_000_000;
pub const MAX_RANK: usize = 16;
/// Longest tensor name and longest metadata string.
pub const MAX_NAME_BYTES: usize = 4096;
pub const MAX_META_BYTES: usize = 1 << 16;

fn fmt_err(m: impl Into<String>) -> Error {
    Error::format(m)
}

/// Bytes per element of `d` (None for sub-byte dtypes, which this crate never reads).
fn dtype_bytes(d: Dtype) -> Option<u64> {
    let bits = d.bitsize();
    bits.is_multiple_of(8).then_some((bits / 8) as u64)
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the data buffer.
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// In file order of the data buffer (sorted by `begin`).
    pub tensors: Vec<TensorInfo>,
    pub metadata: Vec<(String, String)>,
    /// Absolute file offset of the data buffer (8 + header length).
    pub data_start: u64,
    /// Length of the data buffer in bytes.
    pub data_len: u64,
}

impl Header {
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------------------
// The header as JSON (serde_json), with duplicate keys rejected — serde's maps keep the last duplicate
// silently, and two readers that disagree about which duplicate counts are an attack surface.

/// A tensor entry as written; numbers stay `serde_json::Number` so negative or fractional values are reported
/// by our checks, not as a generic type error. (Duplicate fields are rejected by the derive.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<serde_json::Number>,
    data_offsets: Vec<serde_json::Number>,
}

/// A JSON object's entries in order, duplicate keys rejected, at most `MAX_TENSORS + 1` of them.
struct UniqueMap<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueMap<V>, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    if out.len() > MAX_TENSORS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_TENSORS} entries"
                        )));
                    }
                    out.push((k, map.next_value()?));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

fn json_u64(v: &serde_json::Number, what: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| fmt_err(format!("{what} must be a non-negative integer, got {v}")))
}

/// Parses and validates the JSON header bytes, given the data buffer's length (step 2 of the module header).
pub fn parse_header(json: &[u8], data_start: u64, data_len: u64) -> Result<Header> {
    let json_err = |e: serde_json::Error| fmt_err(format!("header JSON: {e}"));
    // Each entry's value is kept as raw JSON text and parsed as a metadata map or a tensor by its key.
    let raw: UniqueMap<&RawValue> = serde_json::from_slice(json).map_err(json_err)?;
    let mut tensors = Vec::new();
    let mut metadata = Vec::new();
    for (name, value) in raw.0 {
        if name == "__metadata__" {
            let m: UniqueMap<String> = serde_json::from_str(value.get())
                .map_err(|e| fmt_err(format!("header JSON: __metadata__: {e}")))?;
            if let Some((k, _)) =
                m.0.iter()
                    .find(|(k, v)| k.len() > MAX_META_BYTES || v.len() > MAX_META_BYTES)
            {
                return Err(fmt_err(format!(
                    "__metadata__ entry {k:?} is longer than {MAX_META_BYTES} bytes"
                )));
            }
            metadata = m.0;
            continue;
        }
        let t: RawTensor = serde_json::from_str(value.get())
            .map_err(|e| fmt_err(format!("header JSON: tensor {name:?}: {e}")))?;
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(fmt_err(format!(
                "tensor name length {} is out of range",
                name.len()
            )));
        }
        let dtype = Dtype::deserialize(de::value::StrDeserializer::<de::value::Error>::new(
            &t.dtype,
        ))
        .map_err(|_| fmt_err(format!("tensor {name:?}: unknown dtype {:?}", t.dtype)))?;
        let esize = dtype_bytes(dtype).ok_or_else(|| {
            fmt_err(format!(
                "tensor {name:?}: dtype {dtype} has sub-byte elements (unsupported)"
            ))
        })?;
        if t.shape.len() > MAX_RANK {
            return Err(fmt_err(format!(
                "tensor {name:?}: rank {} exceeds {MAX_RANK}",
                t.shape.len()
            )));
        }
        let mut shape = Vec::with_capacity(t.shape.len());
        for d in &t.shape {
            let x = json_u64(d, &format!("tensor {name:?}: shape entry"))?;
            shape.push(
                usize::try_from(x)
                    .map_err(|_| fmt_err(format!("tensor {name:?}: dimension too large")))?,
            );
        }
        let [b, e] = t.data_offsets.as_slice() else {
            return Err(fmt_err(format!(
                "tensor {name:?}: data_offsets must be [begin, end]"
            )));
        };
        let (begin, end) = (
            json_u64(b, &format!("tensor {name:?}: data_offsets[0]"))?,
            json_u64(e, &format!("tensor {name:?}: data_offsets[1]"))?,
        );
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| fmt_err(format!("tensor {name:?}: element count overflows")))?;
        let bytes = (numel as u64)
            .checked_mul(esize)
            .ok_or_else(|| fmt_err(format!("tensor {name:?}: byte size overflows")))?;
        if begin > end {
            return Err(fmt_err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] are reversed"
            )));
        }
        if end - begin != bytes {
            return Err(fmt_err(format!(
                "tensor {name:?}: shape {shape:?} × {dtype} needs {bytes} bytes but data_offsets span {}",
                end - begin
            )));
        }
        if end > data_len {
            return Err(fmt_err(format!(
                "tensor {name:?}: data_offsets end {end} is beyond the data buffer ({data_len} bytes; file truncated?)"
            )));
        }
        tensors.push(TensorInfo {
            name,
            dtype,
            shape,
            begin,
            end,
        });
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut cursor = 0u64;
    for t in &tensors {
        if t.begin < cursor {
            return Err(fmt_err(format!(
                "tensor {:?}: data overlaps the previous tensor",
                t.name
            )));
        }
        if t.begin > cursor {
            return Err(fmt_err(format!(
                "tensor {:?}: hole of {} bytes before its data",
                t.name,
                t.begin - cursor
            )));
        }
        cursor = t.end;
    }
    if cursor != data_len {
        return Err(fmt_err(format!(
            "data buffer has {data_len} bytes but the tensors cover {cursor} (trailing bytes)"
        )));
    }
    Ok(Header {
        tensors,
        metadata,
        data_start,
        data_len,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/// An open, validated, memory-mapped safetensors file.
pub struct SafetensorsFile {
    pub path: String,
    pub header: Header,
    map: Mmap,
}

impl SafetensorsFile {
    /// Opens `path`, checks our limits and header, maps it, and checks the crate parses it too.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| Error::io(format!("{shown}: {e}"));
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(fmt_err(format!(
                "{shown}: file is {file_len} bytes, too short for the 8-byte header length"
            )));
        }
        if file_len > MAX_FILE_BYTES {
            return Err(fmt_err(format!(
                "{shown}: file is {file_len} bytes, more than the limit {MAX_FILE_BYTES}"
            )));
        }
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8).map_err(io)?;
        let n = u64::from_le_bytes(n8);
        if n == 0 || n > MAX_HEADER_BYTES {
            return Err(fmt_err(format!(
                "{shown}: header length {n} is out of range (1..={MAX_HEADER_BYTES})"
            )));
        }
        if 8 + n > file_len {
            return Err(fmt_err(format!(
                "{shown}: header length {n} exceeds the file ({file_len} bytes; truncated or not safetensors)"
            )));
        }
        // SAFETY: the mapping is read-only and private to this process; see the module header for files changed
        // under a mapping. Every slice we take of it is bounds-checked (by the header checks and the crate).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        if map.len() as u64 != file_len {
            return Err(Error::io(format!(
                "{shown}: file changed size while being opened"
            )));
        }
        let header = parse_header(&map[8..8 + n as usize], 8 + n, file_len - 8 - n)
            .map_err(|e| fmt_err(format!("{shown}: {}", e.message)))?;
        let f = SafetensorsFile {
            path: shown,
            header,
            map,
        };
        f.view()?;
        Ok(f)
    }

    /// The `safetensors` crate's view of the mapped file (parses the header again: take it once per load, not
    /// once per tensor).
    pub fn view(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.map)
            .map_err(|e| fmt_err(format!("{}: safetensors: {e}", self.path)))
    }

    /// Reads tensor `name` (F32, BF16 or F16) into `out` (length = its element count).
    pub fn read_f32_into(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let view = self.view()?;
        let t = view
            .tensor(name)
            .map_err(|e| fmt_err(format!("{}: {e}", self.path)))?;
        read_f32(&self.path, name, &t, out)
    }
}

/// Converts tensor view `t` (F32, BF16 or F16, little-endian) into `out`, in parallel blocks, and checks
/// every value is finite while the block is still in cache (a NaN or ±inf is a format error naming the tensor
/// and the element).
pub fn read_f32(path: &str, name: &str, t: &TensorView<'_>, out: &mut [f32]) -> Result<()> {
    let numel: usize = t.shape().iter().product();
    if out.len() != numel {
        return Err(fmt_err(format!(
            "{path}: tensor {name:?} has {numel} elements, destination {}",
            out.len()
        )));
    }
    let (dtype, bytes) = (t.dtype(), t.data());
    let esize = match dtype {
        Dtype::F32 => 4,
        Dtype::BF16 | Dtype::F16 => 2,
        other => {
            return Err(fmt_err(format!(
                "{path}: tensor {name:?} has dtype {other}; only F32, BF16 and F16 load as f32"
            )))
        }
    };
    assert_eq!(
        bytes.len(),
        numel * esize,
        "the crate validated the tensor's byte range"
    );
    // Blocks of 64 Ki elements: large enough to amortise a task, small enough to balance two threads and to
    // check a block while it is in L2.
    const BLOCK: usize = 1 << 16;
    let first_bad = std::sync::atomic::AtomicUsize::new(usize::MAX);
    par_rows(out, BLOCK, 1, |block0, dst| {
        let src = &bytes[block0 * BLOCK * esize..][..dst.len() * esize];
        for (k, (d, s)) in dst
            .chunks_mut(BLOCK)
            .zip(src.chunks(BLOCK * esize))
            .enumerate()
        {
            match dtype {
                Dtype::F32 => f32_from_le(s, d),
                Dtype::BF16 => half_from_le(s, d, |h| half::bf16::from_bits(h).to_f32()),
                _ => half_from_le(s, d, |h| half::f16::from_bits(h).to_f32()),
            }
            if let Some(i) = d.iter().position(|x| !x.is_finite()) {
                first_bad.fetch_min(
                    (block0 + k) * BLOCK + i,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    });
    match first_bad.into_inner() {
        usize::MAX => Ok(()),
        i => Err(fmt_err(format!(
            "{path}: tensor {name:?} value at index {i} is not finite ({})",
            out[i]
        ))),
    }
}

/// Little-endian f32 bytes → f32 (a plain copy on little-endian hosts).
fn f32_from_le(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len() * 4);
    #[cfg(target_endian = "little")]
    // SAFETY: `dst` has exactly `src.len()` bytes (asserted), any bit pattern is a valid f32, and the regions
    // cannot overlap (one is a read-only mapping or a borrowed slice, the other a `&mut`).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len())
    }
    #[cfg(not(target_endian = "little"))]
    for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Little-endian 16-bit floats → f32 through `convert` (bf16 or f16 bits → f32). Reads whole `u16`s when the
/// bytes are 2-aligned (they are in files whose header length is a multiple of 8, as writers pad it), so the
/// loop vectorises; byte pairs otherwise.
fn half_from_le(src: &[u8], dst: &mut [f32], convert: impl Fn(u16) -> f32) {
    assert_eq!(src.len(), dst.len() * 2);
    // SAFETY: u16 has no invalid bit patterns; `align_to` returns the aligned middle part, used only when it
    // covers all of `src`.
    let (head, mid, tail) = unsafe { src.align_to::<u16>() };
    if cfg!(target_endian = "little") && head.is_empty() && tail.is_empty() {
        for (d, &h) in dst.iter_mut().zip(mid) {
            *d = convert(h);
        }
    } else {
        for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *d = convert(u16::from_le_bytes([c[0], c[1]]));
        }
    }
}

/// One entry of the destination table for `load_named` (the model's parameter table).
pub struct Wanted<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub offset: usize,
    pub len: usize,
}

/// Loads every `wanted` tensor from `files` (a sharded checkpoint may spread them over several) into the flat
/// buffer `out`. Every wanted name must appear exactly once with exactly the wanted shape; a tensor in the
/// files that is not wanted is an error unless `ignorable(name)` says it may be skipped (e.g. `lm_head.weight`
/// of a tied model). Every check runs before any data is read.
pub fn load_named(
    files: &[&Path],
    wanted: &[Wanted<'_>],
    out: &mut [f32],
    ignorable: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let opened = files
        .iter()
        .map(|p| SafetensorsFile::open(p))
        .collect::<Result<Vec<_>>>()?;
    let by_name: std::collections::HashMap<&str, &Wanted<'_>> =
        wanted.iter().map(|w| (w.name, w)).collect();
    // (file index, tensor) for every wanted name found
    let mut found: std::collections::HashMap<&str, (usize, &TensorInfo)> =
        std::collections::HashMap::new();
    for (fi, f) in opened.iter().enumerate() {
        for t in &f.header.tensors {
            if let Some(w) = by_name.get(t.name.as_str()) {
                if found.insert(w.name, (fi, t)).is_some() {
                    return Err(fmt_err(format!(
                        "tensor {:?} appears in more than one file",
                        t.name
                    )));
                }
            } else if !ignorable(&t.name) {
                return Err(fmt_err(format!(
                    "{}: unexpected tensor {:?} (not a parameter of this model configuration)",
                    f.path, t.name
                )));
            }
        }
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !found.contains_key(w.name))
        .map(|w| w.name)
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(fmt_err(format!(
            "{} parameter tensor(s) missing from the checkpoint, e.g. {:?}",
            missing.len(),
            shown
        )));
    }
    for w in wanted {
        let (_, t) = found[w.name];
        if t.shape != w.shape {
            return Err(fmt_err(format!(
                "tensor {:?} has shape {:?} but the config needs {:?}",
                w.name, t.shape, w.shape
            )));
        }
        if !matches!(t.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            return Err(fmt_err(format!(
                "tensor {:?} has dtype {}; only F32, BF16 and F16 load",
                w.name, t.dtype
            )));
        }
        if w.offset.checked_add(w.len).is_none_or(|e| e > out.len()) {
            return Err(fmt_err(format!(
                "parameter table entry {:?} is out of range",
                w.name
            )));
        }
    }
    for (fi, f) in opened.iter().enumerate() {
        let view = f.view()?;
        for w in wanted.iter().filter(|w| found[w.name].0 == fi) {
            let t = view
                .tensor(w.name)
                .map_err(|e| fmt_err(format!("{}: {e}", f.path)))?;
            read_f32(&f.path, w.name, &t, &mut out[w.offset..w.offset + w.len])?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/// A tensor to write: name, shape, and its values as f32 or raw bfloat16 bits.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: TensorData<'a>,
}

pub enum TensorData<'a> {
    F32(&'a [f32]),
    /// Raw little-endian bfloat16 values (tests and converters).
    BF16(&'a [u16]),
}

impl TensorData<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::BF16(_) => Dtype::BF16,
        }
    }
    fn len(&self) -> usize {
        match self {
            TensorData::F32(x) => x.len(),
            TensorData::BF16(x) => x.len(),
        }
    }
    fn byte_len(&self) -> u64 {
        self.len() as u64 * dtype_bytes(self.dtype()).unwrap_or(0)
    }
}

/// The header bytes (padded with spaces to a multiple of 8) for `tensors` laid out contiguously in order,
/// metadata first; serde_json writes the JSON, so names are escaped as JSON requires.
fn header_bytes(tensors: &[TensorOut<'_>], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    use serde_json::{json, Map, Value};
    let mut names = HashSet::new();
    // serde_json's Map keeps keys sorted; written by hand below to keep our order (data order).
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(tensors.len() + 1);
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        entries.push(("__metadata__".into(), Value::Object(m)));
    }
    let mut offset = 0u64;
    for t in tensors {
        if t.name.is_empty() || t.name == "__metadata__" || !names.insert(t.name) {
            return Err(fmt_err(format!(
                "cannot write tensor name {:?} (empty, reserved or duplicate)",
                t.name
            )));
        }
        let numel: usize = t.shape.iter().product();
        if numel != t.data.len() {
            return Err(fmt_err(format!(
                "tensor {:?}: shape {:?} does not match {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        let end = offset + t.data.byte_len();
        let dtype = t.data.dtype().to_string();
        entries.push((
            t.name.to_string(),
            json!({ "dtype": dtype, "shape": t.shape, "data_offsets": [offset, end] }),
        ));
        offset = end;
    }
    let mut s = Vec::from(b"{".as_slice());
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(b',');
        }
        serde_json::to_writer(&mut s, k).map_err(|e| fmt_err(e.to_string()))?;
        s.push(b':');
        serde_json::to_writer(&mut s, v).map_err(|e| fmt_err(e.to_string()))?;
    }
    s.push(b'}');
    while s.len() % 8 != 0 {
        s.push(b' ');
    }
    Ok(s)
}

/// Writes a safetensors file atomically (to `path.tmp`, synced, then renamed over `path`).
pub fn write(path: &Path, tensors: &[TensorOut<'_>], metadata: &[(&str, &str)]) -> Result<()> {
    let shown = path.display().to_string();
    let header = header_bytes(tensors, metadata)?;
    let tmp = path.with_extension("safetensors.tmp");
    let io = |e: std::io::Error| Error::io(format!("{shown}: writing: {e}"));
    {
        let f = File::create(&tmp).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        let mut staging: Vec<u8> = Vec::with_capacity(1 << 20);
        for t in tensors {
            match &t.data {
                TensorData::F32(xs) => write_le(&mut w, &mut staging, xs, |x| x.to_le_bytes()),
                TensorData::BF16(xs) => write_le(&mut w, &mut staging, xs, |x| x.to_le_bytes()),
            }
            .map_err(io)?;
        }
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Writes `xs` as little-endian bytes, 256 Ki values at a time through a bounded staging buffer.
fn write_le<T: Copy, const N: usize>(
    w: &mut impl Write,
    staging: &mut Vec<u8>,
    xs: &[T],
    le: impl Fn(T) -> [u8; N],
) -> std::io::Result<()> {
    for chunk in xs.chunks(1 << 18) {
        staging.clear();
        chunk
            .iter()
            .for_each(|&x| staging.extend_from_slice(&le(x)));
        w.write_all(staging)?;
    }
    Ok(())
}

/// f32 → bfloat16 bits, round to nearest even (for writing BF16 files).
pub fn f32_to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("spark-st-{}-{}", std::process::id(), name))
    }

    fn raw_file(path: &Path, header: &str, data: &[u8]) {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        std::fs::write(path, b).unwrap();
    }

    fn bits(xs: &[f32]) -> Vec<u32> {
        xs.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn f32_round_trip_is_exact_and_metadata_kept() {
        let p = tmp("rt.safetensors");
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.3).collect();
        let b = vec![f32::MIN_POSITIVE, -0.0, 1e30, 7.0];
        // a name that needs JSON escaping
        let odd = "quote\"back\\slash\u{1}";
        let save = || {
            let tensors = [
                TensorOut {
                    name: "a.weight",
                    shape: vec![3, 4],
                    data: TensorData::F32(&a),
                },
                TensorOut {
                    name: odd,
                    shape: vec![4],
                    data: TensorData::F32(&b),
                },
            ];
            write(&p, &tensors, &[("format", "pt")]).unwrap();
        };
        save();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.header.meta("format"), Some("pt"));
        assert_eq!(
            f.header
                .tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["a.weight", odd]
        );
        let mut out = vec![0.0; 12];
        f.read_f32_into("a.weight", &mut out).unwrap();
        assert_eq!(bits(&out), bits(&a));
        let mut out = vec![0.0; 4];
        f.read_f32_into(odd, &mut out).unwrap();
        assert_eq!(bits(&out), bits(&b));
        // the bytes are deterministic
        let first = std::fs::read(&p).unwrap();
        save();
        assert_eq!(std::fs::read(&p).unwrap(), first);
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn large_tensors_convert_in_parallel_blocks() {
        // More than one block (64 Ki elements) and a ragged tail, for every dtype.
        let n = 3 * (1 << 16) + 123;
        // at most 8 significant bits: exact in bfloat16
        let vals: Vec<f32> = (0..n).map(|i| ((i % 256) as f32 - 128.0) * 0.5).collect();
        let bf: Vec<u16> = vals.iter().map(|&v| f32_to_bf16(v)).collect();
        let p = tmp("big.safetensors");
        write(
            &p,
            &[
                TensorOut {
                    name: "f",
                    shape: vec![n],
                    data: TensorData::F32(&vals),
                },
                TensorOut {
                    name: "b",
                    shape: vec![n],
                    data: TensorData::BF16(&bf),
                },
            ],
            &[],
        )
        .unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        let mut out = vec![0.0; n];
        f.read_f32_into("f", &mut out).unwrap();
        assert!(
            bits(&out) == bits(&vals),
            "F32 differs at {:?}",
            out.iter().zip(&vals).position(|(a, b)| a != b)
        );
        out.fill(0.0);
        f.read_f32_into("b", &mut out).unwrap();
        assert!(
            out == vals,
            "BF16 differs at {:?}",
            out.iter().zip(&vals).position(|(a, b)| a != b)
        );
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn bf16_and_f16_convert() {
        assert_eq!(f32_to_bf16(1.5), 0x3FC0);
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3F80, "ties round to even");
        let p = tmp("bf16.safetensors");
        let vals = [1.0f32, -0.5, 3.25, 1024.0];
        let raw: Vec<u16> = vals.iter().map(|&v| f32_to_bf16(v)).collect();
        write(
            &p,
            &[TensorOut {
                name: "x",
                shape: vec![2, 2],
                data: TensorData::BF16(&raw),
            }],
            &[],
        )
        .unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.header.get("x").unwrap().dtype, Dtype::BF16);
        let mut out = vec![0.0; 4];
        f.read_f32_into("x", &mut out).unwrap();
        assert_eq!(out, vals);
        // F16: 1, −2, the smallest subnormal, 65504; then +∞, which no checkpoint may hold
        let halves: [u16; 8] = [
            0x3C00, 0xC000, 0x0001, 0x7BFF, 0x3C00, 0x3C00, 0x3C00, 0x7C00,
        ];
        let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        raw_file(
            &p,
            r#"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"inf":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}"#,
            &data,
        );
        let f = SafetensorsFile::open(&p).unwrap();
        f.read_f32_into("h", &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0, 5.960_464_5e-8, 65504.0]);
        let e = f.read_f32_into("inf", &mut out).unwrap_err().to_string();
        assert!(
            e.contains("tensor \"inf\" value at index 3 is not finite (inf)"),
            "{e}"
        );
        // an odd header length leaves 16-bit data unaligned: the byte-pair path converts it the same way
        let odd = r#"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}} "#;
        raw_file(&p, odd, &data[..8]);
        assert_eq!(odd.len() % 2, 1);
        let f = SafetensorsFile::open(&p).unwrap();
        out.fill(0.0);
        f.read_f32_into("h", &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0, 5.960_464_5e-8, 65504.0]);
        // other dtypes do not load as f32
        raw_file(
            &p,
            r#"{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        let f = SafetensorsFile::open(&p).unwrap();
        let e = f.read_f32_into("i", &mut out[..2]).unwrap_err().to_string();
        assert!(e.contains("only F32, BF16 and F16"), "{e}");
        std::fs::remove_file(p).ok();
    }

    fn open_err(name: &str, header: &str, data: &[u8]) -> String {
        let p = tmp(name);
        raw_file(&p, header, data);
        let r = SafetensorsFile::open(&p);
        std::fs::remove_file(&p).ok();
        match r {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn lying_headers_are_rejected_with_clear_messages() {
        let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let p = tmp("ok.safetensors");
        raw_file(&p, ok, &[0u8; 8]);
        assert!(SafetensorsFile::open(&p).is_ok());
        std::fs::remove_file(&p).ok();

        let cases: &[(&str, &str, &[u8], &str)] = &[
            ("trunc", ok, &[0u8; 4], "beyond the data buffer"),
            (
                "shape",
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "needs 12 bytes",
            ),
            (
                "overlap",
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                &[0u8; 8],
                "overlaps",
            ),
            (
                "hole",
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                &[0u8; 8],
                "hole",
            ),
            (
                "trailing",
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0u8; 8],
                "trailing bytes",
            ),
            (
                "dtype",
                r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "unknown dtype",
            ),
            (
                "dup",
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                &[0u8; 8],
                "duplicate key",
            ),
            (
                "dup-meta",
                r#"{"__metadata__":{"step":"1","step":"2"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "duplicate key",
            ),
            (
                "json",
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
                &[0u8; 8],
                "header JSON",
            ),
            (
                "field",
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
                &[0u8; 8],
                "unknown field",
            ),
            (
                "overflow",
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "overflows",
            ),
            (
                "neg",
                r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "non-negative integer",
            ),
            (
                "frac",
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#,
                &[0u8; 8],
                "non-negative integer",
            ),
            (
                "meta",
                r#"{"__metadata__":{"step":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "header JSON",
            ),
            (
                "rank",
                r#"{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]}}"#,
                &[0u8; 8],
                "rank 17",
            ),
        ];
        for (name, header, data, want) in cases {
            let e = open_err(name, header, data);
            assert!(e.contains(want), "{name}: {e}");
            assert!(e.contains("ERR_SPARK_FORMAT"), "{name}: {e}");
        }
        let long = format!(
            r#"{{"__metadata__":{{"k":"{}"}},"a":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}}"#,
            "x".repeat(MAX_META_BYTES + 1)
        );
        let e = open_err("long-meta", &long, &[0u8; 8]);
        assert!(e.contains("longer than"), "{e}");
        // header length larger than the file; a file too short for the length; a zero length
        let p = tmp("hlen");
        let mut b = 1000u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(&p, b).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("exceeds the file"), "{e}");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("too short"), "{e}");
        std::fs::write(&p, [0u8; 16]).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("out of range"), "{e}");
        // a header length beyond the limit is refused before anything is read
        let mut b = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(&p, b).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("out of range"), "{e}");
        // an oversized (sparse) file is refused before it is mapped
        let f = File::create(&p).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("more than the limit"), "{e}");
        std::fs::remove_file(&p).ok();
        let e = SafetensorsFile::open(&p).err().unwrap();
        assert_eq!(e.code, crate::error::ErrorCode::Io, "{e}");
    }

    #[test]
    fn load_named_checks_names_and_shapes() {
        let p = tmp("named.safetensors");
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [5.0f32, 6.0];
        write(
            &p,
            &[
                TensorOut {
                    name: "a",
                    shape: vec![2, 2],
                    data: TensorData::F32(&a),
                },
                TensorOut {
                    name: "b",
                    shape: vec![2],
                    data: TensorData::F32(&b),
                },
            ],
            &[],
        )
        .unwrap();
        let mut out = vec![0.0; 6];
        let wanted = [
            Wanted {
                name: "b",
                shape: &[2],
                offset: 0,
                len: 2,
            },
            Wanted {
                name: "a",
                shape: &[2, 2],
                offset: 2,
                len: 4,
            },
        ];
        load_named(&[&p], &wanted, &mut out, &|_| false).unwrap();
        assert_eq!(out, [5.0, 6.0, 1.0, 2.0, 3.0, 4.0]);
        let wrong = [
            Wanted {
                name: "b",
                shape: &[2],
                offset: 0,
                len: 2,
            },
            Wanted {
                name: "a",
                shape: &[4],
                offset: 2,
                len: 4,
            },
        ];
        let e = load_named(&[&p], &wrong, &mut out, &|_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs [4]"), "{e}");
        let only_a = [Wanted {
            name: "a",
            shape: &[2, 2],
            offset: 0,
            len: 4,
        }];
        let e = load_named(&[&p], &only_a, &mut out, &|_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unexpected tensor"), "{e}");
        load_named(&[&p], &only_a, &mut out, &|n| n == "b").unwrap();
        let more = [
            Wanted {
                name: "a",
                shape: &[2, 2],
                offset: 0,
                len: 4,
            },
            Wanted {
                name: "c",
                shape: &[1],
                offset: 4,
                len: 1,
            },
        ];
        let e = load_named(&[&p], &more, &mut out, &|n| n == "b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        // the same tensor in two shards
        let e = load_named(&[&p, &p], &wanted, &mut out, &|_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than one file"), "{e}");
        std::fs::remove_file(p).ok();
    }
}
