#!/usr/bin/env bash
# The chart against a real API server, without a node (~30 s warm): tests/cluster/up
# --control-plane-only, then
#   - `helm install` with the default values and with ci/namespaced-values.yaml into namespaces
#     that enforce the `restricted` Pod Security Standard; the CRD from the chart's crds/ must be
#     accepted (structural schema, CEL rules within the cost budget) and Established;
#   - the operator pods must be admitted (the ReplicaSet creates them; no node runs them);
#   - RBAC, asked with `kubectl auth can-i` as the operator's ServiceAccount: what the operator
#     needs is allowed, neighbouring verbs/namespaces are not;
#   - `helm uninstall` removes the release's objects.
# Runs its own control plane in $KUBEFRONT_CLUSTER_DIR (default /tmp/kubefront-chart-cp) on
# ports 26443/23379/23380 (override: KUBEFRONT_CHART_{APISERVER,ETCD,ETCD_PEER}_PORT); refuses to run while a node is up (tests/cluster/down would clear that
# node's pod cgroups). Must run as root (tests/cluster/up).
set -euo pipefail
cd "$(dirname "$0")/../.."
export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
export KUBEFRONT_CLUSTER_DIR="${KUBEFRONT_CHART_CLUSTER_DIR:-/tmp/kubefront-chart-cp}"
export KUBEFRONT_APISERVER_PORT="${KUBEFRONT_CHART_APISERVER_PORT:-26443}"
export KUBEFRONT_ETCD_PORT="${KUBEFRONT_CHART_ETCD_PORT:-23379}"
export KUBEFRONT_ETCD_PEER_PORT="${KUBEFRONT_CHART_ETCD_PEER_PORT:-23380}"
chart="${KUBEFRONT_CHART_DIR:-charts/kubefront}"
helm="$KUBEFRONT_CACHE/bin/helm"
kubectl="$KUBEFRONT_CACHE/bin/kubectl"
start=$(date +%s)
phase() { echo "=== [chart-on-apiserver +$(($(date +%s) - start))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
k() { "$kubectl" "$@"; }

# tests/cluster/down is not scoped to one cluster: it kills every process in the kubepods cgroups
# and removes them. Never run beside a node (another tests/cluster instance or any kubelet).
if compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || compgen -G '/sys/fs/cgroup/kubepods*' >/dev/null; then
  fail "a kubelet's pod cgroups exist (/sys/fs/cgroup/*/kubepods): run this check when no node is up"
fi
tests/cluster/install-tools helm
tests/cluster/build k8s
work=$(mktemp -d)
export HELM_CACHE_HOME="$work/helm" HELM_CONFIG_HOME="$work/helm" HELM_DATA_HOME="$work/helm"
cleanup() {
  local rc=$?
  tests/cluster/down >/dev/null 2>&1 || true
  rm -rf "$work"
  ((rc == 0)) && phase "passed" || echo "=== chart-on-apiserver FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT

phase "control plane up"
tests/cluster/up --control-plane-only >/dev/null
export KUBECONFIG="$KUBEFRONT_CLUSTER_DIR/admin.kubeconfig"

restricted_ns() {
  k create namespace "$1" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "$1" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
}

phase "helm install (default values, all namespaces)"
restricted_ns kubefront-system
"$helm" install kubefront "$chart" --namespace kubefront-system
k wait --for condition=Established crd/distributions.kubefront.io --timeout=60s

phase "helm install (ci/namespaced-values.yaml: Roles, leader election)"
restricted_ns shop-system
restricted_ns shop
restricted_ns shop-edge
"$helm" install shop "$chart" --namespace shop-system -f "$chart/ci/namespaced-values.yaml"

phase "operator pods admitted under Pod Security 'restricted'"
pods_created() { # pods_created NS COUNT
  [[ $(k -n "$1" get pods -l app.kubernetes.io/name=kubefront -o name | wc -l) -ge $2 ]]
}
for i in $(seq 1 60); do
  pods_created kubefront-system 1 && pods_created shop-system 1 && break
  sleep 1
  : "$i"
done
pods_created kubefront-system 1 || { k -n kubefront-system get events >&2; fail "no operator pod created in kubefront-system"; }
pods_created shop-system 1 || { k -n shop-system get events >&2; fail "no operator pod created in shop-system"; }

phase "RBAC as the operator's ServiceAccount"
can() { # can yes|no AS VERB RESOURCE [NS|ALL]
  local want=$1 as=$2 verb=$3 res=$4 ns=${5:-} got scope=()
  [[ -z $ns ]] || scope=(-n "$ns")
  [[ $ns != ALL ]] || scope=(--all-namespaces)
  got=$(k auth can-i "$verb" "$res" "${scope[@]}" --as "$as" 2>/dev/null || true)
  [[ $got == "$want" ]] || fail "$as: can-i $verb $res ${ns:+-n $ns}: got '$got', want $want"
  printf '  %-3s %-8s %-45s %s\n' "$want" "$verb" "$res" "${ns:-(cluster)}"
}
sa=system:serviceaccount:kubefront-system:kubefront
for verb in get list watch patch update; do can yes "$sa" "$verb" distributions.kubefront.io any-ns; done
can yes "$sa" list distributions.kubefront.io ALL
can yes "$sa" watch deployments.apps ALL
can yes "$sa" patch distributions.kubefront.io/status any-ns
can yes "$sa" update distributions.kubefront.io/finalizers any-ns
for res in configmaps services secrets deployments.apps poddisruptionbudgets.policy; do
  for verb in get list watch create patch delete; do can yes "$sa" "$verb" "$res" any-ns; done
  can no "$sa" update "$res" any-ns
done
can yes "$sa" create events.events.k8s.io any-ns
can yes "$sa" create events any-ns
can no "$sa" create pods any-ns
can no "$sa" create pods/exec any-ns
can no "$sa" create clusterroles
can no "$sa" get nodes
# Tenancy: reads namespaces (is a Distribution's namespace terminating?), never writes them.
can yes "$sa" get namespaces
can no "$sa" delete namespaces
can no "$sa" patch namespaces
# One replica: no leader election, so no Lease rights.
can no "$sa" create leases.coordination.k8s.io kubefront-system
sa=system:serviceaccount:shop-system:shop-kubefront
can yes "$sa" patch distributions.kubefront.io shop
can no "$sa" patch distributions.kubefront.io other
can yes "$sa" patch deployments.apps shop-edge
can no "$sa" patch deployments.apps other
can no "$sa" list distributions.kubefront.io ALL
can no "$sa" get namespaces
can yes "$sa" create leases.coordination.k8s.io shop-system
can yes "$sa" update leases.coordination.k8s.io/kubefront-operator shop-system
can no "$sa" update leases.coordination.k8s.io/other shop-system

phase "helm uninstall"
"$helm" uninstall shop --namespace shop-system --wait
"$helm" uninstall kubefront --namespace kubefront-system --wait
left=$(k get clusterroles,clusterrolebindings -o name | grep -c kubefront || true)
[[ $left == 0 ]] || fail "$left cluster-scoped RBAC objects left after uninstall"
left=$(k get deployments,roles,rolebindings,serviceaccounts,services -A -l app.kubernetes.io/name=kubefront -o name | wc -l)
[[ $left == 0 ]] || fail "$left namespaced objects left after uninstall"
