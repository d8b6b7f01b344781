#!/usr/bin/env bash
# Builds and runs the CPU emulation check of the CUDA kernels (emu_test.cpp over cuda_emu.h): g++ (C++20) and
# pthreads only, no GPU and no CUDA. Exits non-zero on a compile error or a failed check.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(dirname "$(dirname "$here")")/target/cuda-emu-test"
mkdir -p "$(dirname "$out")"
if [ ! -x "$out" ] || [ -n "$(find "$here/.." -name '*.cu*' -newer "$out" -o -name '*.h' -newer "$out" -o -name '*.cpp' -newer "$out")" ]; then
  g++ -std=c++20 -O1 -pthread -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-parameter -Wno-clobbered -Werror -o "$out" "$here/emu_test.cpp"
fi
exec nice -n 10 "$out"
