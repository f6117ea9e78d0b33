# shellcheck shell=bash
# Shared settings for the tests/cluster scripts (sourced, not executed).
# Every path is overridable by environment so CI and developers can relocate caches and state.

CLUSTER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
# Kubernetes release the k8s/ module pins; staging modules are replaced by v0.<minor>.<patch>.
K8S_VERSION="$(grep -m1 -o 'k8s.io/kubernetes v[0-9.]*' "$CLUSTER_SRC/k8s/go.mod" | awk '{print $2}')"
export K8S_BIN="${K8S_BIN:-$KUBEFRONT_CACHE/k8s-$K8S_VERSION/bin}"
export TOOLS_BIN="${TOOLS_BIN:-$KUBEFRONT_CACHE/bin}"
# Cluster state (certs, etcd data, logs, pids, kubeconfig). Short path: unix sockets live here.
export KUBEFRONT_CLUSTER_DIR="${KUBEFRONT_CLUSTER_DIR:-/tmp/kubefront-cluster}"

_t0="${_t0:-$(date +%s%N)}"
# Prints a message prefixed with seconds since the script started.
log() { printf '[%6.1fs] %s\n' "$(awk -v a="$_t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b-a)/1e9}')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Stamp identifying a Go build: module files plus the Go toolchain, so a change of either rebuilds.
go_stamp() {
  local dir="$1"
  { cat "$dir/go.mod" "$dir/go.sum"; go version; } | sha256sum | cut -c1-16
}
