#!/usr/bin/env bash
# Materialises the CRD schemas deploy/validate checks custom resources against, from the pinned Go module
# releases (the Go module proxy serves them), into .tools/crds/ (ignored; nothing third-party is committed).
# .ci/run calls it; the rendered-chart test reads .tools/crds/.
#
#   bash deploy/validate/fetch.sh [OUT_DIR]
#
# KEDA v2.21.x needs Go >= 1.27 to download as a module, so v2.20.2 (the newest Go 1.26 fetches) is pinned;
# the ScaledObject fields the chart uses are the same in both.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../.tools/crds}"
mkdir -p "$out"
cd "$here"
while read -r file mod path; do
  dir="$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "fetch: cannot download $mod" >&2; exit 1; }
  install -m 0644 "$dir/$path" "$out/$file"
done <<'LIST'
keda.sh_scaledobjects.crd github.com/kedacore/keda/v2@v2.20.2 config/crd/bases/keda.sh_scaledobjects.yaml
cert-manager.io_certificates.crd github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/cert-manager.io_certificates.yaml
monitoring.coreos.com_servicemonitors.crd github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
monitoring.coreos.com_prometheusrules.crd github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
LIST
