//! The safetensors format: a defensive reader (F32, BF16 and F16 tensors convert to f32) and an F32 writer.
//!
//! File layout: 8 bytes little-endian `N`, then `N` bytes of UTF-8 JSON (optionally padded with spaces), then
//! the data buffer. The JSON maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets
//! relative to the data buffer) plus an optional `"__metadata__"` string→string map.
//!
//! Everything in a header is distrusted: the header length is bounded (`MAX_HEADER_BYTES`) and must fit the
//! file; the JSON is parsed by a small bounded parser (depth, lengths) that rejects duplicate keys; every
//! tensor needs a known dtype, a shape whose element count times the dtype size equals `end - begin`
//! (overflow-checked), offsets inside the data buffer, and tensors may neither overlap nor leave holes (as the
//! reference implementation requires). Tensor data is read per tensor with `seek + read_exact`, so a file is
//! never loaded whole and a truncated file is reported, not read past.
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Largest header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most tensors in one file, and most dimensions in one shape.
pub const MAX_TENSORS: usize = 1_000_000;
pub const MAX_RANK: usize = 16;
/// Longest tensor name.
pub const MAX_NAME_BYTES: usize = 4096;
const MAX_JSON_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub enum SafetensorsError {
    /// The file system said no (missing file, permission, short read of a file that changed under us).
    Io(String),
    /// The bytes do not form a valid, self-consistent safetensors file.
    Format(String),
}

impl std::fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SafetensorsError::Io(m) | SafetensorsError::Format(m) => f.write_str(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, SafetensorsError>;

fn fmt_err(m: impl Into<String>) -> SafetensorsError {
    SafetensorsError::Format(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    F8E4M3,
    F8E5M2,
}

impl Dtype {
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U64" => Dtype::U64,
            "U32" => Dtype::U32,
            "U16" => Dtype::U16,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            _ => return None,
        })
    }
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U64 => "U64",
            Dtype::U32 => "U32",
            Dtype::U16 => "U16",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
        }
    }
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
// A small bounded JSON parser (objects keep order and reject duplicate keys; numbers keep their text so
// integers are read exactly).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, m: &str) -> Result<T> {
        Err(fmt_err(format!("header JSON: {m} at byte {}", self.i)))
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn lit(&mut self, word: &str, v: Json) -> Result<Json> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("unexpected token")
        }
    }
    fn value(&mut self, depth: usize) -> Result<Json> {
        if depth > MAX_JSON_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut items: Vec<(String, Json)> = Vec::new();
                let mut seen = HashSet::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(items));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return self.err("expected a string key");
                    }
                    let k = self.string()?;
                    if !seen.insert(k.clone()) {
                        return Err(fmt_err(format!("header JSON: duplicate key {k:?}")));
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    if items.len() > MAX_TENSORS + 1 {
                        return self.err("too many entries");
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(items));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if items.len() > MAX_TENSORS {
                        return self.err("array too long");
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                if text.parse::<f64>().is_err() {
                    return self.err("malformed number");
                }
                Ok(Json::Num(text.to_string()))
            }
            Some(_) => self.err("unexpected character"),
        }
    }
    fn hex4(&mut self) -> Result<u32> {
        if self.i + 4 > self.s.len() {
            return self.err("truncated \\u escape");
        }
        let h = std::str::from_utf8(&self.s[self.i..self.i + 4])
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok());
        self.i += 4;
        match h {
            Some(v) => Ok(v),
            None => self.err("bad \\u escape"),
        }
    }
    fn string(&mut self) -> Result<String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(esc) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match esc {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.s.get(self.i) == Some(&b'\\')
                                    && self.s.get(self.i + 1) == Some(&b'u')
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return self.err("bad surrogate pair");
                                    }
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    return self.err("lone surrogate");
                                }
                            }
                            let Some(ch) = char::from_u32(cp) else {
                                return self.err("bad code point");
                            };
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                c if c < 0x20 => return self.err("control character in string"),
                c => out.push(c),
            }
            if out.len() > MAX_NAME_BYTES * 16 {
                return self.err("string too long");
            }
        }
        String::from_utf8(out).map_err(|_| fmt_err("header JSON: string is not UTF-8"))
    }
}

fn parse_json(bytes: &[u8]) -> Result<Json> {
    let mut p = Parser { s: bytes, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != bytes.len() {
        return p.err("trailing bytes after the JSON value");
    }
    Ok(v)
}

fn json_u64(v: &Json, what: &str) -> Result<u64> {
    match v {
        Json::Num(t) if t.bytes().all(|b| b.is_ascii_digit()) => t
            .parse::<u64>()
            .map_err(|_| fmt_err(format!("{what}: integer {t} out of range"))),
        _ => Err(fmt_err(format!("{what} must be a non-negative integer"))),
    }
}

/// Parses and validates the JSON header bytes, given the data buffer's length.
pub fn parse_header(json: &[u8], data_start: u64, data_len: u64) -> Result<Header> {
    let root = parse_json(json)?;
    let Json::Obj(entries) = root else {
        return Err(fmt_err("header JSON must be an object"));
    };
    if entries.len() > MAX_TENSORS + 1 {
        return Err(fmt_err("too many tensors in header"));
    }
    let mut tensors = Vec::new();
    let mut metadata = Vec::new();
    for (name, v) in entries {
        if name == "__metadata__" {
            let Json::Obj(m) = v else {
                return Err(fmt_err("__metadata__ must be an object"));
            };
            for (k, mv) in m {
                let Json::Str(s) = mv else {
                    return Err(fmt_err(format!("__metadata__.{k} must be a string")));
                };
                metadata.push((k, s));
            }
            continue;
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(fmt_err(format!(
                "tensor name length {} is out of range",
                name.len()
            )));
        }
        let Json::Obj(fields) = v else {
            return Err(fmt_err(format!("tensor {name:?}: entry must be an object")));
        };
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        for (k, fv) in fields {
            match k.as_str() {
                "dtype" => dtype = Some(fv),
                "shape" => shape = Some(fv),
                "data_offsets" => offsets = Some(fv),
                other => return Err(fmt_err(format!("tensor {name:?}: unknown field {other:?}"))),
            }
        }
        let dtype = match dtype {
            Some(Json::Str(s)) => Dtype::parse(&s)
                .ok_or_else(|| fmt_err(format!("tensor {name:?}: unknown dtype {s:?}")))?,
            _ => {
                return Err(fmt_err(format!(
                    "tensor {name:?}: dtype missing or not a string"
                )))
            }
        };
        let shape =
            match shape {
                Some(Json::Arr(dims)) => {
                    if dims.len() > MAX_RANK {
                        return Err(fmt_err(format!(
                            "tensor {name:?}: rank {} exceeds {MAX_RANK}",
                            dims.len()
                        )));
                    }
                    let mut out = Vec::with_capacity(dims.len());
                    for d in &dims {
                        let x = json_u64(d, &format!("tensor {name:?}: shape entry"))?;
                        out.push(usize::try_from(x).map_err(|_| {
                            fmt_err(format!("tensor {name:?}: dimension too large"))
                        })?);
                    }
                    out
                }
                _ => {
                    return Err(fmt_err(format!(
                        "tensor {name:?}: shape missing or not an array"
                    )))
                }
            };
        let (begin, end) = match offsets {
            Some(Json::Arr(o)) if o.len() == 2 => (
                json_u64(&o[0], &format!("tensor {name:?}: data_offsets[0]"))?,
                json_u64(&o[1], &format!("tensor {name:?}: data_offsets[1]"))?,
            ),
            _ => {
                return Err(fmt_err(format!(
                    "tensor {name:?}: data_offsets must be [begin, end]"
                )))
            }
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| fmt_err(format!("tensor {name:?}: element count overflows")))?;
        let bytes = (numel as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| fmt_err(format!("tensor {name:?}: byte size overflows")))?;
        if begin > end {
            return Err(fmt_err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] are reversed"
            )));
        }
        if end - begin != bytes {
            return Err(fmt_err(format!(
                "tensor {name:?}: shape {shape:?} × {} needs {bytes} bytes but data_offsets span {}",
                dtype.name(),
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

/// An open safetensors file with its validated header.
pub struct SafetensorsFile {
    pub path: String,
    file: File,
    pub header: Header,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let mut file =
            File::open(path).map_err(|e| SafetensorsError::Io(format!("{shown}: {e}")))?;
        let file_len = file
            .metadata()
            .map_err(|e| SafetensorsError::Io(format!("{shown}: {e}")))?
            .len();
        if file_len < 8 {
            return Err(fmt_err(format!(
                "{shown}: file is {file_len} bytes, too short for the 8-byte header length"
            )));
        }
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8)
            .map_err(|e| SafetensorsError::Io(format!("{shown}: {e}")))?;
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
        let mut json = vec![0u8; n as usize];
        file.read_exact(&mut json)
            .map_err(|e| SafetensorsError::Io(format!("{shown}: {e}")))?;
        let header = parse_header(&json, 8 + n, file_len - 8 - n).map_err(|e| match e {
            SafetensorsError::Format(m) => fmt_err(format!("{shown}: {m}")),
            io => io,
        })?;
        Ok(SafetensorsFile {
            path: shown,
            file,
            header,
        })
    }

    /// Reads tensor `t` (F32, BF16 or F16) into `out` (its length must equal the element count).
    pub fn read_f32_into(&mut self, t: &TensorInfo, out: &mut [f32]) -> Result<()> {
        if out.len() != t.numel() {
            return Err(fmt_err(format!(
                "{}: tensor {:?} has {} elements, destination {}",
                self.path,
                t.name,
                t.numel(),
                out.len()
            )));
        }
        let esize = t.dtype.size();
        match t.dtype {
            Dtype::F32 | Dtype::BF16 | Dtype::F16 => {}
            other => {
                return Err(fmt_err(format!(
                    "{}: tensor {:?} has dtype {}; only F32, BF16 and F16 load as f32",
                    self.path,
                    t.name,
                    other.name()
                )))
            }
        }
        let io = |e: std::io::Error, p: &str| {
            SafetensorsError::Io(format!("{p}: reading tensor data: {e}"))
        };
        self.file
            .seek(SeekFrom::Start(self.header.data_start + t.begin))
            .map_err(|e| io(e, &self.path))?;
        // Read in chunks so conversion needs only a bounded staging buffer.
        const CHUNK: usize = 1 << 20; // elements
        let mut buf = vec![0u8; CHUNK.min(out.len().max(1)) * esize];
        let mut done = 0;
        while done < out.len() {
            let n = CHUNK.min(out.len() - done);
            let bytes = &mut buf[..n * esize];
            self.file.read_exact(bytes).map_err(|e| io(e, &self.path))?;
            let dst = &mut out[done..done + n];
            match t.dtype {
                Dtype::F32 => {
                    for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                        *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                Dtype::BF16 => {
                    for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                        *d = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                    }
                }
                _ => {
                    for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                        *d = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                    }
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// bfloat16 → f32 is exact: the top 16 bits of an f32.
pub fn bf16_to_f32(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// f32 → bfloat16 with round-to-nearest-even (NaN stays NaN). Used by tests that write BF16 files.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    let round = 0x7FFF + ((b >> 16) & 1);
    ((b.wrapping_add(round)) >> 16) as u16
}

/// IEEE half → f32 (exact, including subnormals, infinities and NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: value = man × 2^-24
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 0x1F {
        sign | 0x7F80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A tensor to write: name, shape, and either f32 data or raw bytes of a given dtype.
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
}

/// Builds the header bytes (padded with spaces to a multiple of 8) for `tensors` laid out contiguously.
fn header_bytes(tensors: &[TensorOut<'_>], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut names = HashSet::new();
    let mut s = String::from("{");
    let mut first = true;
    if !metadata.is_empty() {
        s.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_escape(k, &mut s);
            s.push(':');
            json_escape(v, &mut s);
        }
        s.push('}');
        first = false;
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
        let bytes = (numel * t.data.dtype().size()) as u64;
        if !first {
            s.push(',');
        }
        first = false;
        json_escape(t.name, &mut s);
        s.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.data.dtype().name(),
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(","),
            offset,
            offset + bytes
        ));
        offset += bytes;
    }
    s.push('}');
    while s.len() % 8 != 0 {
        s.push(' ');
    }
    Ok(s.into_bytes())
}

/// Writes a safetensors file atomically (to `path.tmp`, then renamed over `path`).
pub fn write(path: &Path, tensors: &[TensorOut<'_>], metadata: &[(&str, &str)]) -> Result<()> {
    let shown = path.display().to_string();
    let header = header_bytes(tensors, metadata)?;
    let tmp = path.with_extension("safetensors.tmp");
    let io = |e: std::io::Error| SafetensorsError::Io(format!("{shown}: writing: {e}"));
    {
        let f = File::create(&tmp).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        let mut staging = Vec::with_capacity(1 << 20);
        for t in tensors {
            match &t.data {
                TensorData::F32(xs) => {
                    for chunk in xs.chunks(1 << 18) {
                        staging.clear();
                        for x in chunk.iter() {
                            staging.extend_from_slice(&x.to_le_bytes());
                        }
                        w.write_all(&staging).map_err(io)?;
                    }
                }
                TensorData::BF16(xs) => {
                    for chunk in xs.chunks(1 << 18) {
                        staging.clear();
                        for x in chunk.iter() {
                            staging.extend_from_slice(&x.to_le_bytes());
                        }
                        w.write_all(&staging).map_err(io)?;
                    }
                }
            }
        }
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
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
/// of a tied model).
pub fn load_named(
    files: &[&Path],
    wanted: &[Wanted<'_>],
    out: &mut [f32],
    ignorable: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let mut opened = Vec::with_capacity(files.len());
    for p in files {
        opened.push(SafetensorsFile::open(p)?);
    }
    let mut found: std::collections::HashMap<&str, (usize, TensorInfo)> =
        std::collections::HashMap::new();
    for (fi, f) in opened.iter().enumerate() {
        for t in &f.header.tensors {
            if let Some(w) = wanted.iter().find(|w| w.name == t.name) {
                if found.contains_key(w.name) {
                    return Err(fmt_err(format!(
                        "tensor {:?} appears in more than one file",
                        t.name
                    )));
                }
                found.insert(w.name, (fi, t.clone()));
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
        let (fi, t) = &found[w.name];
        if t.shape != w.shape {
            return Err(fmt_err(format!(
                "tensor {:?} has shape {:?} but the config needs {:?}",
                w.name, t.shape, w.shape
            )));
        }
        let end = w.offset.checked_add(w.len).filter(|&e| e <= out.len());
        let Some(end) = end else {
            return Err(fmt_err(format!(
                "parameter table entry {:?} is out of range",
                w.name
            )));
        };
        opened[*fi].read_f32_into(t, &mut out[w.offset..end])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spark-st-{}-{}", std::process::id(), name));
        d
    }

    fn raw_file(path: &Path, header: &str, data: &[u8]) {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn f32_round_trip_is_exact_and_metadata_kept() {
        let p = tmp("rt.safetensors");
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.3).collect();
        let b = vec![f32::MIN_POSITIVE, -0.0, 1e30, 7.0];
        write(
            &p,
            &[
                TensorOut {
                    name: "a.weight",
                    shape: vec![3, 4],
                    data: TensorData::F32(&a),
                },
                TensorOut {
                    name: "b",
                    shape: vec![4],
                    data: TensorData::F32(&b),
                },
            ],
            &[("format", "pt")],
        )
        .unwrap();
        let mut f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.header.meta("format"), Some("pt"));
        let t = f.header.get("a.weight").unwrap().clone();
        let mut out = vec![0.0; 12];
        f.read_f32_into(&t, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let t = f.header.get("b").unwrap().clone();
        let mut out = vec![0.0; 4];
        f.read_f32_into(&t, &mut out).unwrap();
        assert_eq!(out[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(out[2], 1e30);
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn bf16_and_f16_convert() {
        assert_eq!(bf16_to_f32(f32_to_bf16(1.5)), 1.5);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.0)), -2.0);
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7C00).is_infinite());
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
        let mut f = SafetensorsFile::open(&p).unwrap();
        let t = f.header.get("x").unwrap().clone();
        assert_eq!(t.dtype, Dtype::BF16);
        let mut out = vec![0.0; 4];
        f.read_f32_into(&t, &mut out).unwrap();
        assert_eq!(out, vals);
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

        let e = open_err("trunc", ok, &[0u8; 4]);
        assert!(e.contains("beyond the data buffer"), "{e}");
        let e = open_err(
            "shape",
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("needs 12 bytes"), "{e}");
        let e = open_err(
            "overlap",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("overlaps"), "{e}");
        let e = open_err(
            "hole",
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("hole"), "{e}");
        let e = open_err(
            "dtype",
            r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("unknown dtype"), "{e}");
        let e = open_err(
            "dup",
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("duplicate key"), "{e}");
        let e = open_err(
            "json",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
            &[0u8; 8],
        );
        assert!(e.contains("header JSON"), "{e}");
        let e = open_err(
            "overflow",
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("overflows"), "{e}");
        let e = open_err(
            "neg",
            r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        assert!(e.contains("non-negative integer"), "{e}");
        // header length larger than the file
        let p = tmp("hlen");
        let mut b = 1000u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(&p, b).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("exceeds the file"), "{e}");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        let e = SafetensorsFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("too short"), "{e}");
        std::fs::remove_file(&p).ok();
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
        std::fs::remove_file(p).ok();
    }
}
