#!/usr/bin/env bash
# Coverage-guided fuzzing of the native core's parsers of untrusted input (libFuzzer through cargo-fuzz, on a
# nightly toolchain): every target in fuzz_targets/ for SECONDS each (default 60), from the corpus kept in
# target/fuzz-corpus/<target> between runs. A crash, panic or failed assertion exits non-zero with the input
# that caused it in fuzz/artifacts/. Needs `rustup toolchain list` to show a nightly and cargo-fuzz
# (`cargo install cargo-fuzz --version 0.13.1 --locked`); says so and exits 2 when either is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-60}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: needs a nightly Rust toolchain (libFuzzer's coverage instrumentation); none installed" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: needs cargo-fuzz: cargo install cargo-fuzz --version 0.13.1 --locked" >&2
  exit 2
fi
cd "$here/.."
for target in $(cargo +nightly fuzz list --fuzz-dir "$here"); do
  corpus="$here/../target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for $seconds s" >&2
  log="$here/../target/fuzz-$target.log"
  if ! cargo +nightly fuzz run --fuzz-dir "$here" "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "fuzz: $target failed (a crash leaves its input in $here/artifacts/$target):" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/fuzz: $target: /" >&2
done
