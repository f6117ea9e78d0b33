#!/usr/bin/env bash
# local provider of the e2e journey (machines without Docker, e.g. CI here): the single-node
# cluster of tests/cluster (built from Go modules), images packed from the release binaries by
# tests/cluster/image (the same `cargo build --release --locked -p …` the Dockerfiles run),
# then tests/e2e/scenario.sh. Must run as root (the kubelet needs it).
#
#   tests/e2e/local.sh
#
# Environment:
#   KUBEFRONT_E2E_REUSE_CLUSTER=1   use a cluster that is already up and leave it running
#   KUBEFRONT_E2E_TAG               tag of the packed images [e2e]
#   KUBEFRONT_E2E_CARGO_PROFILE     cargo profile of the binaries [release]
#   KUBEFRONT_E2E_BIN_DIR           take kubefront-operator and kubefront-edge from this directory
#                                   instead of building them (e.g. CI artifacts)
#   plus tests/cluster/* variables (KUBEFRONT_CLUSTER_DIR, ports, …) and scenario.sh's.
set -euo pipefail
cd "$(dirname "$0")/../.."
export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
export KUBEFRONT_CLUSTER_DIR="${KUBEFRONT_CLUSTER_DIR:-/tmp/kubefront-cluster}"
tag="${KUBEFRONT_E2E_TAG:-e2e}"
profile="${KUBEFRONT_E2E_CARGO_PROFILE:-release}"
start=$(date +%s)
phase() { echo "=== [local +$(($(date +%s) - start))s] $*"; }

[[ $(id -u) == 0 ]] || { echo "local.sh must run as root (tests/cluster/up starts a kubelet)" >&2; exit 1; }

phase "tools: tests/cluster/install-tools + build (cached)"
tests/cluster/install-tools
tests/cluster/build   # every component, each skipped while its stamp is current

if [[ -n ${KUBEFRONT_E2E_BIN_DIR:-} ]]; then
  out_dir=$KUBEFRONT_E2E_BIN_DIR
  phase "binaries from $out_dir"
else
  # One package per cargo invocation, exactly as the Dockerfiles build them (no feature
  # unification across the workspace). scripts/test instead passes KUBEFRONT_E2E_BIN_DIR with the
  # binaries of its one workspace test build; the operator installs its rustls provider
  # explicitly, so the unified build (ring and aws-lc-rs both linked) starts fine too.
  for crate in kubefront-operator kubefront-edge; do
    phase "cargo build --profile $profile --locked -p $crate"
    nice -n 10 cargo build --profile "$profile" --locked -j 2 -p "$crate"
  done
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  out_dir="$target_dir/$profile"
  [[ $profile != dev ]] || out_dir="$target_dir/debug"
fi
for b in kubefront-operator kubefront-edge; do
  [[ -x $out_dir/$b ]] || { echo "$out_dir/$b missing" >&2; exit 1; }
done

started=0
cleanup() {
  local rc=$?
  if ((started)); then
    phase "tests/cluster/down"
    KUBEFRONT_KEEP_LOGS=$([[ $rc != 0 ]] && echo 1) tests/cluster/down || true
  fi
  exit "$rc"
}
trap cleanup EXIT

cluster_up() { # the API server of $KUBEFRONT_CLUSTER_DIR answers
  [[ -f $KUBEFRONT_CLUSTER_DIR/admin.kubeconfig ]] &&
    "$KUBEFRONT_CACHE/bin/kubectl" --kubeconfig "$KUBEFRONT_CLUSTER_DIR/admin.kubeconfig" \
      get --raw=/readyz --request-timeout=3s >/dev/null 2>&1
}
leftovers() { cluster_up || compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || compgen -G '/sys/fs/cgroup/kubepods*' >/dev/null; }
if [[ ${CI:-} =~ ^(1|[Tt]rue|TRUE|yes)$ && ${KUBEFRONT_E2E_REUSE_CLUSTER:-} != 1 ]] && leftovers; then
  # Under CI nothing else runs on the machine: what is there was left by a killed run (its
  # cluster, kubepods cgroups, bridge, mounts). Clear it instead of failing.
  phase "CI: clearing what a killed run left (tests/cluster/down)"
  tests/cluster/down >/dev/null 2>&1 || true
  for hier in /sys/fs/cgroup/*/; do
    [[ -d $hier/kubepods ]] || continue
    while read -r pid; do [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; done \
      < <(find "$hier/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null)
    sleep 1
    find "$hier/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  true
fi
if [[ ${KUBEFRONT_E2E_REUSE_CLUSTER:-} == 1 ]] && cluster_up; then
  phase "reusing the cluster in $KUBEFRONT_CLUSTER_DIR (left running)"
elif cluster_up; then
  echo "a cluster is already up in $KUBEFRONT_CLUSTER_DIR: set KUBEFRONT_E2E_REUSE_CLUSTER=1 to use it," \
    "or stop it with tests/cluster/down" >&2
  exit 1
elif compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || compgen -G '/sys/fs/cgroup/kubepods*' >/dev/null; then
  # tests/cluster/down would clear that other kubelet's pod cgroups.
  echo "another kubelet's pod cgroups exist (/sys/fs/cgroup/*/kubepods): is another cluster running?" >&2
  exit 1
else
  phase "tests/cluster/up"
  started=1
  tests/cluster/up >/dev/null
fi
kubeconfig="$KUBEFRONT_CLUSTER_DIR/admin.kubeconfig"

phase "images into the node's containerd"
tests/cluster/image "$out_dir/kubefront-operator" "kubefront/operator:$tag"
tests/cluster/image "$out_dir/kubefront-edge" "kubefront/edge:$tag"
tests/cluster/image minio "kubefront-test/minio:$tag"
tests/cluster/image "$KUBEFRONT_CACHE/bin/mc" "kubefront-test/mc:$tag"

phase "scenario"
KUBEFRONT_CLUSTER_PROVIDER=local \
  KUBECONFIG="$kubeconfig" \
  KUBEFRONT_OPERATOR_IMAGE="kubefront/operator:$tag" \
  KUBEFRONT_EDGE_IMAGE="kubefront/edge:$tag" \
  KUBEFRONT_E2E_MINIO_IMAGE="kubefront-test/minio:$tag" \
  KUBEFRONT_E2E_MC_IMAGE="kubefront-test/mc:$tag" \
  KUBEFRONT_E2E_APP_IMAGE="${PAUSE_IMAGE:-kubefront-test/pause:1}" \
  tests/e2e/scenario.sh
