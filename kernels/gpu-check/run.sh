#!/usr/bin/env bash
# `pnpm gpu:check [--compile-only] [--json FILE]`: builds gpu-check.rs against the crate's release rlib (like the
# benchmark: no bin target in Cargo.toml) and runs it. NVRTC is looked for in SPARK_CUDA_LIB_DIR; when unset and
# the repository's venv of the nvidia-cuda-nvrtc wheel exists (.tools/cuda-venv, installed by .ci/run), its
# site-packages is used. The binary (target/release/spark-gpu-check) needs no Node.js.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
repo="$(dirname "$crate")"
cd "$crate"
cargo build --release --quiet --lib
out="$crate/target/release/spark-gpu-check"
if [ ! -x "$out" ] || [ "$here/gpu-check.rs" -nt "$out" ] || [ "$crate/target/release/libspark_kernels.rlib" -nt "$out" ]; then
  rustc --edition 2021 -C opt-level=2 \
    -L "dependency=$crate/target/release/deps" \
    --extern "spark_kernels=$crate/target/release/libspark_kernels.rlib" \
    "$here/gpu-check.rs" -o "$out"
fi
if [ -z "${SPARK_CUDA_LIB_DIR:-}" ]; then
  site="$(ls -d "$repo"/.tools/cuda-venv/lib/python3*/site-packages 2>/dev/null | head -1 || true)"
  if [ -n "$site" ]; then export SPARK_CUDA_LIB_DIR="$site"; fi
fi
args=()
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--json" ] && [ "$#" -gt 1 ]; then
    case "$2" in /*) args+=("--json" "$2") ;; *) args+=("--json" "${INIT_CWD:-$PWD}/$2") ;; esac
    shift 2
  else
    args+=("$1")
    shift
  fi
done
exec "$out" "${args[@]}"
