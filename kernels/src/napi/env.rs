//! The safe layer over `sys`: an `Env` (valid only on the JS thread, only during the callback that received
//! it) with typed conversions between JS values and Rust values.
//!
//! Copy semantics: every typed array read here (`f32_vec`, `u32_vec`) is COPIED into a Rust `Vec` at call
//! time, so JS may reuse or mutate its buffer as soon as the call returns, and worker threads never touch JS
//! memory. Every typed array created here (`f32_array`, `u32_array`) is a fresh buffer owned by JS.
//! Every read is bounded: strings by a byte limit, arrays and typed arrays by an element limit.
use super::error::{Error, ErrorCode, Result};
use super::sys::{self, napi_value};
use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr;

/// Upper bound on a string read from JS (paths, names, preset ids): 64 KiB.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Upper bound on elements of a typed array crossing the boundary: 2^31 (8 GiB of f32).
pub const MAX_TYPED_ELEMS: usize = 1 << 31;

#[derive(Clone, Copy)]
pub struct Env(pub sys::napi_env);

/// A JS value handle (valid in the current handle scope only).
pub type Value = napi_value;

fn cstr(name: &str) -> CString {
    // Property names are string literals of this crate, never user input; an interior NUL is a bug.
    CString::new(name).expect("property name without NUL")
}

impl Env {
    /// Turns a non-ok status into an Error carrying Node's own explanation.
    pub fn check(self, status: sys::napi_status, what: &str) -> Result<()> {
        if status == sys::napi_ok {
            return Ok(());
        }
        let mut info: *const sys::napi_extended_error_info = ptr::null();
        // SAFETY: env is valid on this thread; info is an out-pointer.
        let msg = unsafe {
            if sys::napi_get_last_error_info(self.0, &mut info) == sys::napi_ok
                && !info.is_null()
                && !(*info).error_message.is_null()
            {
                std::ffi::CStr::from_ptr((*info).error_message)
                    .to_string_lossy()
                    .into_owned()
            } else {
                format!("status {status}")
            }
        };
        Err(Error::new(
            ErrorCode::Napi,
            format!("{what}: Node-API call failed: {msg}"),
        ))
    }

    // ---- creating values ----
    pub fn undefined(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        self.check(
            unsafe { sys::napi_get_undefined(self.0, &mut v) },
            "get_undefined",
        )?;
        Ok(v)
    }
    pub fn null(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        self.check(unsafe { sys::napi_get_null(self.0, &mut v) }, "get_null")?;
        Ok(v)
    }
    pub fn boolean(self, b: bool) -> Result<Value> {
        let mut v = ptr::null_mut();
        self.check(
            unsafe { sys::napi_get_boolean(self.0, b, &mut v) },
            "get_boolean",
        )?;
        Ok(v)
    }
    pub fn number(self, x: f64) -> Result<Value> {
        let mut v = ptr::null_mut();
        self.check(
            unsafe { sys::napi_create_double(self.0, x, &mut v) },
            "create_double",
        )?;
        Ok(v)
    }
    pub fn string(self, s: &str) -> Result<Value> {
        let mut v = ptr::null_mut();
        let st =
            unsafe { sys::napi_create_string_utf8(self.0, s.as_ptr().cast(), s.len(), &mut v) };
        self.check(st, "create_string_utf8")?;
        Ok(v)
    }
    pub fn object(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        self.check(
            unsafe { sys::napi_create_object(self.0, &mut v) },
            "create_object",
        )?;
        Ok(v)
    }
    pub fn array(self, items: &[Value]) -> Result<Value> {
        let mut v = ptr::null_mut();
        let st = unsafe { sys::napi_create_array_with_length(self.0, items.len(), &mut v) };
        self.check(st, "create_array")?;
        for (i, item) in items.iter().enumerate() {
            let idx = u32::try_from(i).map_err(|_| Error::invalid("array too long"))?;
            self.check(
                unsafe { sys::napi_set_element(self.0, v, idx, *item) },
                "set_element",
            )?;
        }
        Ok(v)
    }
    pub fn set(self, obj: Value, name: &str, value: Value) -> Result<()> {
        let n = cstr(name);
        let st = unsafe { sys::napi_set_named_property(self.0, obj, n.as_ptr(), value) };
        self.check(st, "set_named_property")
    }
    /// A JS Error with `code` and `message` (not thrown).
    pub fn error_value(self, e: &Error) -> Result<Value> {
        let code = self.string(e.code.code())?;
        let msg = self.string(&e.message)?;
        let mut v = ptr::null_mut();
        self.check(
            unsafe { sys::napi_create_error(self.0, code, msg, &mut v) },
            "create_error",
        )?;
        Ok(v)
    }
    /// Throws `e` as a JS Error, unless a JS exception is already pending (that one then propagates).
    pub fn throw(self, e: &Error) {
        let mut pending = false;
        unsafe { sys::napi_is_exception_pending(self.0, &mut pending) };
        if pending {
            return;
        }
        if let Ok(v) = self.error_value(e) {
            unsafe { sys::napi_throw(self.0, v) };
        }
    }
    /// Takes a pending JS exception (e.g. thrown by a getter while we read an argument), if any.
    pub fn take_exception(self) -> Option<Value> {
        let mut pending = false;
        unsafe { sys::napi_is_exception_pending(self.0, &mut pending) };
        if !pending {
            return None;
        }
        let mut v = ptr::null_mut();
        let st = unsafe { sys::napi_get_and_clear_last_exception(self.0, &mut v) };
        (st == sys::napi_ok).then_some(v)
    }

    // ---- reading values ----
    pub fn type_of(self, v: Value) -> Result<sys::napi_valuetype> {
        let mut t = 0;
        self.check(unsafe { sys::napi_typeof(self.0, v, &mut t) }, "typeof")?;
        Ok(t)
    }
    pub fn is_nullish(self, v: Value) -> Result<bool> {
        let t = self.type_of(v)?;
        Ok(t == sys::napi_undefined || t == sys::napi_null)
    }
    fn expect_type(self, v: Value, t: sys::napi_valuetype, what: &str, want: &str) -> Result<()> {
        if self.type_of(v)? != t {
            return Err(Error::invalid(format!("{what} must be {want}")));
        }
        Ok(())
    }
    /// A finite number (NaN and ±Infinity are rejected).
    pub fn f64(self, v: Value, what: &str) -> Result<f64> {
        self.expect_type(v, sys::napi_number, what, "a number")?;
        let mut x = 0.0;
        self.check(
            unsafe { sys::napi_get_value_double(self.0, v, &mut x) },
            "get_value_double",
        )?;
        if !x.is_finite() {
            return Err(Error::invalid(format!("{what} must be finite, got {x}")));
        }
        Ok(x)
    }
    /// A finite number that fits f32 (rounded).
    pub fn f32(self, v: Value, what: &str) -> Result<f32> {
        let x = self.f64(v, what)?;
        let y = x as f32;
        if !y.is_finite() {
            return Err(Error::invalid(format!(
                "{what} is out of the f32 range: {x}"
            )));
        }
        Ok(y)
    }
    /// A non-negative integer ≤ `max`.
    pub fn usize(self, v: Value, what: &str, max: usize) -> Result<usize> {
        let x = self.f64(v, what)?;
        if x < 0.0 || x.fract() != 0.0 || x > max as f64 {
            return Err(Error::invalid(format!(
                "{what} must be an integer in [0, {max}], got {x}"
            )));
        }
        Ok(x as usize)
    }
    /// A non-negative integer seed (≤ 2^53, the exact-integer range of a JS number).
    pub fn u64(self, v: Value, what: &str) -> Result<u64> {
        Ok(self.usize(v, what, (1usize << 53).min(usize::MAX))? as u64)
    }
    pub fn bool(self, v: Value, what: &str) -> Result<bool> {
        self.expect_type(v, sys::napi_boolean, what, "a boolean")?;
        let mut b = false;
        self.check(
            unsafe { sys::napi_get_value_bool(self.0, v, &mut b) },
            "get_value_bool",
        )?;
        Ok(b)
    }
    /// A UTF-8 string of at most `MAX_STRING_BYTES` bytes.
    pub fn string_value(self, v: Value, what: &str) -> Result<String> {
        self.expect_type(v, sys::napi_string, what, "a string")?;
        let mut len = 0usize;
        let st =
            unsafe { sys::napi_get_value_string_utf8(self.0, v, ptr::null_mut(), 0, &mut len) };
        self.check(st, "get_value_string_utf8")?;
        if len > MAX_STRING_BYTES {
            return Err(Error::invalid(format!(
                "{what} is too long ({len} bytes, limit {MAX_STRING_BYTES})"
            )));
        }
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        let st = unsafe {
            sys::napi_get_value_string_utf8(
                self.0,
                v,
                buf.as_mut_ptr().cast(),
                len + 1,
                &mut written,
            )
        };
        self.check(st, "get_value_string_utf8")?;
        buf.truncate(written);
        String::from_utf8(buf).map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
    }
    /// Property `name` of object `obj` (checks `obj` is an object).
    pub fn get(self, obj: Value, name: &str, what: &str) -> Result<Value> {
        let t = self.type_of(obj)?;
        if t != sys::napi_object {
            return Err(Error::invalid(format!("{what} must be an object")));
        }
        let n = cstr(name);
        let mut v = ptr::null_mut();
        let st = unsafe { sys::napi_get_named_property(self.0, obj, n.as_ptr(), &mut v) };
        self.check(st, "get_named_property")?;
        Ok(v)
    }
    pub fn has(self, obj: Value, name: &str) -> Result<bool> {
        let n = cstr(name);
        let mut b = false;
        let st = unsafe { sys::napi_has_named_property(self.0, obj, n.as_ptr(), &mut b) };
        self.check(st, "has_named_property")?;
        Ok(b)
    }
    /// The items of a JS array of at most `max` elements.
    pub fn array_items(self, v: Value, what: &str, max: usize) -> Result<Vec<Value>> {
        let mut is = false;
        self.check(
            unsafe { sys::napi_is_array(self.0, v, &mut is) },
            "is_array",
        )?;
        if !is {
            return Err(Error::invalid(format!("{what} must be an array")));
        }
        let mut len = 0u32;
        self.check(
            unsafe { sys::napi_get_array_length(self.0, v, &mut len) },
            "get_array_length",
        )?;
        if len as usize > max {
            return Err(Error::invalid(format!(
                "{what} has {len} items, limit {max}"
            )));
        }
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..len {
            let mut item = ptr::null_mut();
            self.check(
                unsafe { sys::napi_get_element(self.0, v, i, &mut item) },
                "get_element",
            )?;
            out.push(item);
        }
        Ok(out)
    }

    // ---- typed arrays ----
    fn typed_info(
        self,
        v: Value,
        what: &str,
    ) -> Result<(sys::napi_typedarray_type, usize, *const c_void)> {
        let mut is = false;
        self.check(
            unsafe { sys::napi_is_typedarray(self.0, v, &mut is) },
            "is_typedarray",
        )?;
        if !is {
            return Err(Error::invalid(format!("{what} must be a typed array")));
        }
        let (mut ty, mut len, mut data, mut ab, mut off) =
            (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
        let st = unsafe {
            sys::napi_get_typedarray_info(
                self.0, v, &mut ty, &mut len, &mut data, &mut ab, &mut off,
            )
        };
        self.check(st, "get_typedarray_info")?;
        if len > MAX_TYPED_ELEMS {
            return Err(Error::invalid(format!(
                "{what} has {len} elements, limit {MAX_TYPED_ELEMS}"
            )));
        }
        Ok((ty, len, data as *const c_void))
    }
    /// Copies a Float32Array into a Vec (values are not checked here; callers decide about NaN).
    pub fn f32_vec(self, v: Value, what: &str) -> Result<Vec<f32>> {
        let (ty, len, data) = self.typed_info(v, what)?;
        if ty != sys::napi_float32_array {
            return Err(Error::invalid(format!("{what} must be a Float32Array")));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: Node guarantees `data` points at `len` elements of the array's type (the view is
        // element-aligned for Float32Array); we copy before returning to JS.
        Ok(unsafe { std::slice::from_raw_parts(data as *const f32, len) }.to_vec())
    }
    /// Copies a Uint32Array into a Vec.
    pub fn u32_vec(self, v: Value, what: &str) -> Result<Vec<u32>> {
        let (ty, len, data) = self.typed_info(v, what)?;
        if ty != sys::napi_uint32_array {
            return Err(Error::invalid(format!("{what} must be a Uint32Array")));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(unsafe { std::slice::from_raw_parts(data as *const u32, len) }.to_vec())
    }
    fn typed_array<T: Copy>(self, ty: sys::napi_typedarray_type, xs: &[T]) -> Result<Value> {
        let bytes = std::mem::size_of_val(xs);
        let mut data: *mut c_void = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let st = unsafe { sys::napi_create_arraybuffer(self.0, bytes, &mut data, &mut ab) };
        self.check(st, "create_arraybuffer")?;
        if bytes > 0 {
            // SAFETY: the fresh buffer has `bytes` bytes; sources and destination do not overlap.
            unsafe { ptr::copy_nonoverlapping(xs.as_ptr() as *const u8, data as *mut u8, bytes) };
        }
        let mut v = ptr::null_mut();
        let st = unsafe { sys::napi_create_typedarray(self.0, ty, xs.len(), ab, 0, &mut v) };
        self.check(st, "create_typedarray")?;
        Ok(v)
    }
    /// A new Float32Array holding a copy of `xs`.
    pub fn f32_array(self, xs: &[f32]) -> Result<Value> {
        self.typed_array(sys::napi_float32_array, xs)
    }
    /// A new Uint32Array holding a copy of `xs`.
    pub fn u32_array(self, xs: &[u32]) -> Result<Value> {
        self.typed_array(sys::napi_uint32_array, xs)
    }

    // ---- objects helpers used by the exports ----
    /// Required property: missing/undefined → a clear error naming it.
    pub fn req(self, obj: Value, name: &str, what: &str) -> Result<Value> {
        let v = self.get(obj, name, what)?;
        if self.type_of(v)? == sys::napi_undefined {
            return Err(Error::invalid(format!("{what}.{name} is required")));
        }
        Ok(v)
    }
    /// Optional property: missing, undefined or null → None.
    pub fn opt(self, obj: Value, name: &str, what: &str) -> Result<Option<Value>> {
        let v = self.get(obj, name, what)?;
        Ok(if self.is_nullish(v)? { None } else { Some(v) })
    }
}
