#!/usr/bin/env bash
# One-shot, idempotent setup used by the README's commands: checks the toolchain, brings the pinned pnpm
# (into ./.tools, never globally), installs the workspace from the lockfile and builds the native addon.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

want_pnpm="$(node -p "require('./package.json').packageManager.split('@')[1]")"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "spark setup: Node.js >= 20 is required (found $(node --version))." >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "spark setup: cargo (Rust) is required to build the native learner; install it with rustup or your package manager." >&2
  exit 1
fi

# The pinned pnpm, from the npm registry, into a project-local prefix.
if [ "$(pnpm --version 2>/dev/null || true)" != "$want_pnpm" ]; then
  if [ "$(.tools/node_modules/.bin/pnpm --version 2>/dev/null || true)" != "$want_pnpm" ]; then
    echo "spark setup: installing pnpm@$want_pnpm into .tools/" >&2
    npm install --silent --no-audit --no-fund --prefix .tools "pnpm@$want_pnpm" >&2
  fi
  export PATH="$root/.tools/node_modules/.bin:$PATH"
fi

pnpm install --frozen-lockfile --prefer-offline --reporter=silent >&2

# The native addon (kernels/): cargo builds incrementally, so this is quick when nothing changed.
if [ -f kernels/package.json ] && node -e "process.exit(require('./kernels/package.json').scripts?.build ? 0 : 1)"; then
  pnpm --filter @spark/kernels run -s build >&2
fi

# With arguments, run them through the pinned pnpm (the README's commands use this: `npm test`, `npm run demo`).
if [ "$#" -gt 0 ]; then
  exec pnpm "$@"
fi
