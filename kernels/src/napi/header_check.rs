//! Mechanical check of `sys.rs` against the Node-API headers shipped with the Node that runs the tests
//! (`$NODE_INCLUDE_DIR`, else `<node prefix>/include/node`, else `/usr/include/node`).
//!
//! For every `pub fn` in sys.rs' `extern "C"` block: the header declares a function of that name with the same
//! number of parameters, each parameter of the corresponding type, and the same return type. Also checked:
//! every enum constant (name and value), every opaque handle typedef, every callback typedef's parameter and
//! return types, and the fields of the structs sys.rs mirrors.
//!
//! C → Rust type mapping used for the comparison: `T*` → `*mut T`, `const T*` → `*const T`,
//! `const T**` → `*mut *const T`; `size_t` → `usize`, `int32_t` → `i32`, `uint32_t` → `u32`, `int64_t` →
//! `i64`, `uint64_t` → `u64`, `double` → `f64`, `char` → `c_char`, `void` → `c_void`, `char16_t` → `u16`;
//! `node_api_basic_env`/`node_api_nogc_env` → `napi_env` and `node_api_basic_finalize`/
//! `node_api_nogc_finalize` → `napi_finalize` (identical typedefs without NAPI_EXPERIMENTAL).
use std::collections::HashMap;
use std::path::PathBuf;

const SYS_RS: &str = include_str!("sys.rs");

fn include_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NODE_INCLUDE_DIR") {
        return PathBuf::from(d);
    }
    if let Ok(out) = std::process::Command::new("node")
        .args(["-p", "process.execPath"])
        .output()
    {
        let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(real) = std::fs::canonicalize(&exe) {
            if let Some(prefix) = real.parent().and_then(|b| b.parent()) {
                let d = prefix.join("include").join("node");
                if d.join("node_api.h").exists() {
                    return d;
                }
            }
        }
    }
    PathBuf::from("/usr/include/node")
}

/// Concatenated headers with comments and preprocessor lines removed, whitespace collapsed.
fn header_text() -> String {
    let dir = include_dir();
    let mut all = String::new();
    for f in [
        "js_native_api_types.h",
        "js_native_api.h",
        "node_api_types.h",
        "node_api.h",
    ] {
        let p = dir.join(f);
        let t = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {} (set NODE_INCLUDE_DIR): {e}", p.display()));
        all.push_str(&t);
        all.push('\n');
    }
    // strip /* */ and // comments, then preprocessor lines (with continuations)
    let mut out = String::new();
    let b = all.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    let mut lines = Vec::new();
    let mut cont = false;
    for line in out.lines() {
        let t = line.trim_start();
        if cont || t.starts_with('#') {
            cont = line.trim_end().ends_with('\\');
            continue;
        }
        lines.push(line);
    }
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn map_base(c: &str) -> String {
    match c {
        "node_api_basic_env" | "node_api_nogc_env" => "napi_env",
        "node_api_basic_finalize" | "node_api_nogc_finalize" => "napi_finalize",
        "size_t" => "usize",
        "int32_t" => "i32",
        "uint32_t" => "u32",
        "int64_t" => "i64",
        "uint64_t" => "u64",
        "double" => "f64",
        "char" => "c_char",
        "void" => "c_void",
        "char16_t" => "u16",
        "int" => "i32",
        other => other,
    }
    .to_string()
}

/// A C parameter declaration ("const char* utf8name") → the Rust type string ("*const c_char").
fn c_param_type(decl: &str) -> String {
    let d = decl.replace('*', " * ");
    let toks: Vec<&str> = d.split_whitespace().collect();
    let stars = toks.iter().filter(|t| **t == "*").count();
    let is_const = toks.first() == Some(&"const");
    // drop the parameter name: the last identifier when there is more than a bare type
    let mut words: Vec<&str> = toks
        .iter()
        .copied()
        .filter(|t| *t != "*" && *t != "const" && *t != "struct")
        .collect();
    if words.len() >= 2 {
        words.pop();
    }
    let base = map_base(words.join(" ").as_str());
    if stars == 0 {
        return base;
    }
    let mut s = String::new();
    for k in 0..stars {
        let innermost = k == stars - 1;
        s.push_str(if innermost && is_const {
            "*const "
        } else {
            "*mut "
        });
    }
    s.push_str(&base);
    s
}

fn split_params(p: &str) -> Vec<String> {
    let p = p.trim();
    if p.is_empty() || p == "void" {
        return Vec::new();
    }
    p.split(',').map(|x| x.trim().to_string()).collect()
}

struct CFn {
    ret: String,
    params: Vec<String>,
}

fn header_functions(h: &str) -> HashMap<String, CFn> {
    let mut out = HashMap::new();
    for chunk in h.split("NAPI_EXTERN").skip(1) {
        let decl = &chunk[..chunk.find(';').unwrap_or(chunk.len())];
        let decl = decl.replace("NAPI_NO_RETURN", "");
        let Some((head, rest)) = decl.split_once("NAPI_CDECL") else {
            continue;
        };
        let Some(open) = rest.find('(') else { continue };
        let name = rest[..open].trim().to_string();
        let close = rest.rfind(')').unwrap_or(rest.len());
        let params = split_params(&rest[open + 1..close])
            .iter()
            .map(|p| c_param_type(p))
            .collect();
        out.insert(
            name,
            CFn {
                ret: map_base(head.trim()),
                params,
            },
        );
    }
    out
}

/// `typedef RET(NAPI_CDECL* NAME)(PARAMS);` → NAME → (ret, params)
fn header_callbacks(h: &str) -> HashMap<String, CFn> {
    let mut out = HashMap::new();
    for chunk in h.split("typedef ").skip(1) {
        let decl = &chunk[..chunk.find(';').unwrap_or(chunk.len())];
        let Some(p) = decl.find("(NAPI_CDECL*") else {
            continue;
        };
        let ret = map_base(decl[..p].trim());
        let rest = &decl[p + "(NAPI_CDECL*".len()..];
        let Some(close_name) = rest.find(')') else {
            continue;
        };
        let name = rest[..close_name].trim().to_string();
        let params_part = &rest[close_name + 1..];
        let (Some(o), Some(c)) = (params_part.find('('), params_part.rfind(')')) else {
            continue;
        };
        let params = split_params(&params_part[o + 1..c])
            .iter()
            .map(|p| c_param_type(p))
            .collect();
        out.insert(name, CFn { ret, params });
    }
    out
}

/// `typedef enum { A, B = 1 << 2, ... } NAME;` → constant name → value (sequential numbering as in C).
fn header_enums(h: &str) -> HashMap<String, (String, i64)> {
    let mut out = HashMap::new();
    for chunk in h.split("typedef enum {").skip(1) {
        let Some(close) = chunk.find('}') else {
            continue;
        };
        let body = &chunk[..close];
        let name = chunk[close + 1..]
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let mut next = 0i64;
        for item in body.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, v) = match item.split_once('=') {
                Some((k, expr)) => {
                    let expr = expr.trim();
                    let v = if let Some((a, b)) = expr.split_once("<<") {
                        a.trim()
                            .parse::<i64>()
                            .ok()
                            .zip(b.trim().parse::<i64>().ok())
                            .map(|(a, b)| a << b)
                    } else {
                        expr.parse::<i64>().ok()
                    };
                    match v {
                        Some(v) => (k.trim(), v),
                        None => continue, // combinations like `a | b` are not mirrored
                    }
                }
                None => (item, next),
            };
            out.insert(k.to_string(), (name.clone(), v));
            next = v + 1;
        }
    }
    out
}

/// `typedef struct X__* NAME;` → NAME → X__
fn header_handles(h: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for chunk in h.split("typedef struct ").skip(1) {
        let decl = &chunk[..chunk.find(';').unwrap_or(chunk.len())];
        if let Some((inner, name)) = decl.split_once('*') {
            if !inner.contains('{') {
                out.insert(name.trim().to_string(), inner.trim().to_string());
            }
        }
    }
    out
}

/// `typedef struct { fields } NAME;` → NAME → [(field, rust type)]
fn header_structs(h: &str) -> HashMap<String, Vec<(String, String)>> {
    let mut out = HashMap::new();
    for chunk in h.split("typedef struct {").skip(1) {
        let Some(close) = chunk.find('}') else {
            continue;
        };
        let name = chunk[close + 1..]
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let fields = chunk[..close]
            .split(';')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let fname = f
                    .rsplit(|c: char| c == ' ' || c == '*')
                    .next()
                    .unwrap_or("")
                    .to_string();
                (fname, c_param_type(f))
            })
            .collect();
        out.insert(name, fields);
    }
    out
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
}

/// Rust parameter list "a: T, b: *mut U" → types.
fn rust_param_types(p: &str) -> Vec<String> {
    p.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| norm(x.split_once(':').map(|(_, t)| t).unwrap_or(x)))
        .collect()
}

fn rust_functions() -> Vec<(String, Vec<String>, String)> {
    let block_start = SYS_RS
        .find("extern \"C\" {")
        .expect("sys.rs has an extern block");
    let block = &SYS_RS[block_start..];
    let mut out = Vec::new();
    for chunk in block.split("pub fn ").skip(1) {
        let decl = norm(&chunk[..chunk.find(';').unwrap()]);
        let open = decl.find('(').unwrap();
        let name = decl[..open].trim().to_string();
        let close = decl.rfind(')').unwrap();
        let params = rust_param_types(&decl[open + 1..close]);
        let ret = decl[close + 1..].trim().trim_start_matches("->").trim();
        out.push((
            name,
            params,
            if ret.is_empty() {
                "c_void".to_string()
            } else {
                ret.to_string()
            },
        ));
    }
    out
}

#[test]
fn every_declared_function_matches_the_node_api_headers() {
    let h = header_text();
    let c = header_functions(&h);
    assert!(
        c.len() > 100,
        "parsed only {} functions from the headers: parser broken?",
        c.len()
    );
    let rust = rust_functions();
    assert!(
        rust.len() >= 40,
        "parsed only {} Rust declarations",
        rust.len()
    );
    let mut problems = Vec::new();
    for (name, params, ret) in &rust {
        let Some(cf) = c.get(name) else {
            problems.push(format!("{name}: not declared in the Node-API headers"));
            continue;
        };
        if cf.params.len() != params.len() {
            problems.push(format!(
                "{name}: {} parameters in Rust, {} in C",
                params.len(),
                cf.params.len()
            ));
            continue;
        }
        for (i, (r, ct)) in params.iter().zip(&cf.params).enumerate() {
            if norm(r) != norm(ct) {
                problems.push(format!(
                    "{name}: parameter {i} is `{r}` in Rust but `{ct}` in C"
                ));
            }
        }
        if norm(ret) != norm(&cf.ret) {
            problems.push(format!(
                "{name}: returns `{ret}` in Rust but `{}` in C",
                cf.ret
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "sys.rs disagrees with node_api.h:\n{}",
        problems.join("\n")
    );
}

#[test]
fn enum_constants_handles_callbacks_and_structs_match() {
    let h = header_text();
    let enums = header_enums(&h);
    let mut problems = Vec::new();
    let mut checked = 0;
    for line in SYS_RS.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("pub const napi_") else {
            continue;
        };
        let (name_ty, value) = rest.split_once('=').unwrap();
        let (name, ty) = name_ty.split_once(':').unwrap();
        let name = format!("napi_{}", name.trim());
        let ty = ty.trim();
        let expr = value.trim().trim_end_matches(';').trim();
        let v = match expr.split_once("<<") {
            Some((a, b)) => a.trim().parse::<i64>().unwrap() << b.trim().parse::<i64>().unwrap(),
            None => expr.parse::<i64>().unwrap(),
        };
        match enums.get(&name) {
            None => problems.push(format!("{name}: no such enum constant in the headers")),
            Some((cty, cv)) => {
                if cty != ty || *cv != v {
                    problems.push(format!("{name}: Rust {ty} = {v}, C {cty} = {cv}"));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "checked only {checked} enum constants");

    // every C enumerator of the mirrored enums is present in Rust (no gaps in the status list, …)
    for (cname, (ety, _)) in &enums {
        if ["napi_status", "napi_valuetype", "napi_typedarray_type"].contains(&ety.as_str())
            && !SYS_RS.contains(&format!("pub const {cname}:"))
        {
            problems.push(format!("{cname} ({ety}) is missing from sys.rs"));
        }
    }

    let handles = header_handles(&h);
    for line in SYS_RS.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("pub type ") {
            if let Some((name, target)) = rest.split_once(" = *mut ") {
                let target = target.trim_end_matches(';');
                match handles.get(name) {
                    Some(c) if c == target => {}
                    other => {
                        problems.push(format!("handle {name}: Rust *mut {target}, C {other:?}"))
                    }
                }
            }
        }
    }

    let callbacks = header_callbacks(&h);
    let flat = norm(SYS_RS);
    for name in [
        "napi_callback",
        "napi_finalize",
        "napi_async_execute_callback",
        "napi_async_complete_callback",
    ] {
        let cb = callbacks
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in headers"));
        let start = flat
            .find(&format!("pub type {name} ="))
            .unwrap_or_else(|| panic!("{name} not in sys.rs"));
        let decl = &flat[start..start + flat[start..].find(';').unwrap()];
        let open = decl.find("fn(").unwrap() + 3;
        let close = open + decl[open..].find(')').unwrap();
        let params = rust_param_types(&decl[open..close]);
        let ret = decl[close..]
            .split("->")
            .nth(1)
            .map(|r| r.trim().trim_end_matches('>').trim().to_string())
            .unwrap_or_else(|| "c_void".to_string());
        if params != cb.params || norm(&ret) != cb.ret {
            problems.push(format!(
                "callback {name}: Rust ({params:?}) -> {ret}, C ({:?}) -> {}",
                cb.params, cb.ret
            ));
        }
    }

    let structs = header_structs(&h);
    for name in ["napi_extended_error_info", "napi_type_tag"] {
        let c = structs
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in headers"));
        let start = SYS_RS.find(&format!("pub struct {name} {{")).unwrap();
        let body = &SYS_RS[start..start + SYS_RS[start..].find('}').unwrap()];
        let fields: Vec<(String, String)> = body
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .map(|l| {
                let (n, t) = l.split_once(':').unwrap();
                (n.trim().to_string(), norm(t.trim().trim_end_matches(',')))
            })
            .collect();
        if &fields != c {
            problems.push(format!("struct {name}: Rust {fields:?}, C {c:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "sys.rs disagrees with the headers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_a_wrong_declaration() {
    // The comparison must be able to fail: a deliberately wrong prototype is reported.
    let h = header_text();
    let c = header_functions(&h);
    let f = c.get("napi_create_double").unwrap();
    assert_eq!(f.params, vec!["napi_env", "f64", "*mut napi_value"]);
    assert_ne!(
        f.params,
        vec![
            "napi_env".to_string(),
            "f32".to_string(),
            "*mut napi_value".to_string()
        ]
    );
    let g = c.get("napi_get_last_error_info").unwrap();
    assert_eq!(
        g.params,
        vec!["napi_env", "*mut *const napi_extended_error_info"]
    );
    let w = c.get("napi_get_typedarray_info").unwrap();
    assert_eq!(w.params.len(), 7);
}
