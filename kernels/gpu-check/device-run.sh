#!/usr/bin/env bash
# The GPU check in one call on a machine with an NVIDIA GPU and PyTorch but no Node.js and no network: runs the
# carried bundle (kernels/target/gpu-check-bundle, made here by bundle.sh: the spark-gpu-check binary and the
# libraries it links) against the CUDA libraries of PyTorch's environment (its nvidia-* wheels' site-packages,
# else the system loader path), writes the report, then times PyTorch's matmul on the same shapes.
# usage: bash kernels/gpu-check/device-run.sh [OUT_DIR] [--device cuda:N]
# Exit: the check's status (0 every op passed, 1 a failure, 2 no usable device).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
out="${1:-${OUT:-.}}"
shift || true
bundle="$crate/target/gpu-check-bundle"
bin="$bundle/bin/spark-gpu-check"
if [ ! -x "$bin" ]; then
  echo "device-run: $bin is missing: run 'bash kernels/gpu-check/bundle.sh' here and carry kernels/target/gpu-check-bundle" >&2
  exit 1
fi
# the libraries the binary links that such a machine lacks (Gloo, hiredis, ...), bundled beside it
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
py="${PYTHON:-python3}"
if [ -z "${SPARK_CUDA_LIB_DIR:-}" ]; then
  site="$("$py" -c 'import site; print(":".join(site.getsitepackages()))' 2>/dev/null || true)"
  if [ -n "$site" ]; then export SPARK_CUDA_LIB_DIR="$site"; fi
fi
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/device-run: /'
"$bin" --json "$out/gpu-check.json" "$@" 2>&1 | tee "$out/gpu-check.txt"
status=${PIPESTATUS[0]}
if [ "$status" -eq 0 ]; then
  "$py" "$here/torch_gemm.py" "$out/gpu-check.json" "$@" 2>&1 | tee "$out/torch-gemm.txt"
fi
exit "$status"
