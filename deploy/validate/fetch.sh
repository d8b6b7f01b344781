#!/usr/bin/env bash
# Re-copies the CRD schemas in crds/ from the pinned Go modules (crds/README.md) and fails on a difference.
#   bash deploy/validate/fetch.sh          # check
#   bash deploy/validate/fetch.sh --write  # overwrite
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
write=0
[ "${1:-}" = --write ] && write=1
status=0
while read -r file mod path; do
  dir="$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "fetch: cannot download $mod" >&2; exit 1; }
  if [ "$write" = 1 ]; then
    install -m 0644 "$dir/$path" "crds/$file"
  elif ! cmp -s "$dir/$path" "crds/$file"; then
    echo "fetch: crds/$file differs from $mod $path" >&2
    status=1
  fi
done <<'LIST'
keda.sh_scaledobjects.crd github.com/kedacore/keda/v2@v2.20.2 config/crd/bases/keda.sh_scaledobjects.yaml
cert-manager.io_certificates.crd github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/cert-manager.io_certificates.yaml
monitoring.coreos.com_servicemonitors.crd github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
monitoring.coreos.com_prometheusrules.crd github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
LIST
exit "$status"
