#!/usr/bin/env bash
# Builds the local test control plane from upstream Go modules and caches the
# binaries outside the repository, keyed by version. Does nothing when the
# cache already holds them.
#   out: $PD_CACHE_DIR/controlplane/<k8s>-etcd<etcd>-kwok<kwok>/bin/{kube-apiserver,...}
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=/dev/null
. "$here/etcd-version.env"
cache_root="${PD_CACHE_DIR:-$HOME/.cache/progressive-delivery}"
bin_dir="$cache_root/controlplane/${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}/bin"
wanted=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

missing=()
for b in "${wanted[@]}"; do [ -x "$bin_dir/$b" ] || missing+=("$b"); done
if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin_dir"; exit 0; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "control plane binaries cached in $bin_dir"
  exit 0
fi
mkdir -p "$bin_dir"
echo "building ${missing[*]} into $bin_dir (first time only; takes a while on 2 cores)"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
kv=k8s.io/component-base/version
k8s_ldflags="-s -w -X $kv.gitVersion=${K8S_VERSION} -X $kv.gitMajor=1 -X $kv.gitMinor=${minor} -X $kv.gitTreeState=clean -X $kv.buildDate=${build_date} -X $kv.gitCommit=release-${K8S_VERSION}"
start=$(date +%s)
cd "$here"
for b in "${missing[@]}"; do
  t0=$(date +%s)
  case "$b" in
    kube-*)
      go build -trimpath -ldflags "$k8s_ldflags" -o "$bin_dir/$b.tmp" "k8s.io/kubernetes/cmd/$b" ;;
    etcd)
      go build -trimpath -ldflags "-s -w" -o "$bin_dir/$b.tmp" go.etcd.io/etcd/server/v3 ;;
    kwok)
      # kwok is its own module with its own dependency graph: build it apart.
      GOBIN="$bin_dir/.kwok" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
      mv "$bin_dir/.kwok/kwok" "$bin_dir/$b.tmp"; rmdir "$bin_dir/.kwok" ;;
  esac
  mv "$bin_dir/$b.tmp" "$bin_dir/$b"
  echo "built $b in $(( $(date +%s) - t0 ))s"
done
echo "control plane build took $(( $(date +%s) - start ))s"
