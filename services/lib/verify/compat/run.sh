#!/usr/bin/env bash
# `pnpm --filter @spark/verify run compat [-- --lib FILE]`: the differential test against Math-Verify.
# Makes a private venv under the repository's ignored .tools/ and installs the pinned Math-Verify there; when
# that fails (no Python, no network), it says so and exits 0 without running.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
venv="$root/.tools/math-verify-venv"
pin="math-verify==0.9.0"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import math_verify' 2>/dev/null; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "$pin"; } >"$root/.tools/math-verify-install.log" 2>&1; then
    echo "compat: skipped: could not install $pin into $venv (see .tools/math-verify-install.log)"
    exit 0
  fi
fi
export PATH="$root/.tools/node_modules/.bin:$PATH"
exec "$venv/bin/python" "$here/differential.py" "$@"
