#!/usr/bin/env bash
# Interleaved A/B of the kernels benchmark on a shared (noisy) machine: git revision REV (A, default main) against
# the working tree (B), run A B A B … PAIRS times (default 10) with the PyTorch reference and 2 threads, one JSON
# per run in OUT (default bench-results/kernels-ab), then the medians of both sides and, per figure, in how many
# pairs B was at least as fast. A is built in a temporary git worktree that is removed at the end.
#
#   bash kernels/bench/ab.sh [REV] [PAIRS]        e.g. bash kernels/bench/ab.sh main 20
set -euo pipefail
rev="${1:-main}"
pairs="${2:-10}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
root="$(git -C "$crate" rev-parse --show-toplevel)"
out="${OUT:-$root/bench-results/kernels-ab}"
mkdir -p "$out"
tmp="$(mktemp -d)"
cleanup() {
  git -C "$root" worktree remove --force "$tmp/a" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

git -C "$root" worktree add --quiet --detach "$tmp/a" "$rev"
build() { (cd "$1" && bash bench/run.sh --help >/dev/null) && cp "$1/target/release/spark-kernels-bench" "$2"; }
build "$tmp/a/kernels" "$tmp/bench-a"
build "$crate" "$tmp/bench-b"
for i in $(seq 1 "$pairs"); do
  for side in a b; do
    bin="$tmp/bench-$side"
    extra=()
    # the 0.5 B load section (when the revision has it) is measured separately
    if "$bin" --help | grep -q -- --no-load; then extra=(--no-load); fi
    # …and so is the 0.5 B sampling section (`--only decode`)
    if "$bin" --help | grep -q -- --no-decode; then extra+=(--no-decode); fi
    echo "pair $i, $side: load average $(cut -d' ' -f1 /proc/loadavg)"
    SPARK_THREADS=2 "$bin" "${extra[@]}" --json "$out/$side-$i.json" >/dev/null
  done
done

node - "$out" "$pairs" <<'EOF'
const [dir, n] = [process.argv[2], Number(process.argv[3])];
const read = (side) => Array.from({ length: n }, (_, i) => JSON.parse(require('fs').readFileSync(`${dir}/${side}-${i + 1}.json`, 'utf8')));
const [a, b] = [read('a'), read('b')];
const med = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`figure (medians of ${n} interleaved pairs)        A        B   B >= A`);
for (const p of ['tiny', 'small']) {
  for (const t of ['train', 'sample']) {
    for (const k of [`${p}.${t}_tokens_per_s`, `${p}.torch_${t}_tokens_per_s`, `${p}.${t}_ratio_ours_over_torch`]) {
      const wins = a.filter((r, i) => b[i][k] >= r[k]).length;
      console.log(`${k.padEnd(40)} ${med(a.map((r) => r[k])).toFixed(2).padStart(9)} ${med(b.map((r) => r[k])).toFixed(2).padStart(9)}   ${wins}/${n}`);
    }
  }
}
const loads = [...a, ...b].flatMap((r) => [r.loadavg_1m_start, r.loadavg_1m_end]);
console.log(`load average (1 min) between ${Math.min(...loads)} and ${Math.max(...loads)}`);
EOF
