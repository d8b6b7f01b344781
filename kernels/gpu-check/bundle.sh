#!/usr/bin/env bash
# Prepares the GPU check for a machine without Node.js, Rust or Debian's libraries (the device machine):
# builds `spark-gpu-check` (kernels/gpu-check/run.sh) and copies it with the shared libraries it links that are
# not the C/C++ runtime (Gloo, hiredis, libibverbs, libnl: the crate's collective layer) into
# kernels/target/gpu-check-bundle/{bin,lib}. Carry that folder (a few MB); device-run.sh uses it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
bash "$here/run.sh" --help >/dev/null
out="$crate/target/gpu-check-bundle"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
cp "$crate/target/release/spark-gpu-check" "$out/bin/"
ldd "$out/bin/spark-gpu-check" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' |
  while read -r name path; do
    case "$name" in
      libc.so.* | libm.so.* | libstdc++.so.* | libgcc_s.so.* | libpthread.so.* | libdl.so.* | ld-linux*) ;;
      *) cp -L "$path" "$out/lib/$name" ;;
    esac
  done
echo "gpu-check bundle: $out ($(du -sh "$out" | cut -f1)): $(ls "$out/lib" | tr '\n' ' ')"
