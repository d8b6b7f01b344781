#!/usr/bin/env bash
# Builds and runs the kernels benchmark (bench/bench.rs) against the release build of the crate, with 2 threads
# unless SPARK_THREADS says otherwise. Arguments pass through (e.g. --json FILE, --no-torch, --quick).
# The benchmark binary is compiled with rustc against the crate's rlib, so Cargo.toml needs no bench target.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
cd "$crate"
cargo build --release --quiet --lib
out="$crate/target/release/spark-kernels-bench"
if [ ! -x "$out" ] || [ "$here/bench.rs" -nt "$out" ] || [ "$crate/target/release/libspark_kernels.rlib" -nt "$out" ]; then
  SPARK_BENCH_DIR="$here" rustc --edition 2021 -C opt-level=3 -C codegen-units=1 \
    -L "dependency=$crate/target/release/deps" \
    --extern "spark_kernels=$crate/target/release/libspark_kernels.rlib" \
    "$here/bench.rs" -o "$out"
fi
# Relative --json paths are resolved from where the user ran the command (pnpm runs scripts in kernels/).
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
export SPARK_THREADS="${SPARK_THREADS:-2}"
exec "$out" "${args[@]}"
