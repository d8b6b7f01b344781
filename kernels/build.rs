//! napi-build: the platform link flags a Node addon needs (e.g. `-undefined dynamic_lookup` on macOS; nothing on
//! Linux, where the Node-API symbols resolve from the node process at load time).
fn main() {
    napi_build::setup();
}
