//! napi-build: the platform link flags a Node addon needs (e.g. `-undefined dynamic_lookup` on macOS; nothing on
//! Linux, where the Node-API symbols resolve from the node process at load time).
//!
//! cc: compiles the collective layer's C++ shim over Gloo (`src/collective/shim.cc`) and links Debian's
//! libgloo (package libgloo-dev at build time, libgloo0 at run time) and libhiredis.
fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=src/collective/shim.cc");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/collective/shim.cc")
        .warnings(true)
        .compile("spark_gloo_shim");
    println!("cargo:rustc-link-lib=dylib=gloo");
    println!("cargo:rustc-link-lib=dylib=hiredis");
}
