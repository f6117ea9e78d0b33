#!/usr/bin/env bash
# The kubefront user journey on a real cluster, as one script shared by every cluster provider
# (tests/e2e/kind.sh on Docker machines, tests/e2e/local.sh on the tests/cluster node):
#
#   helm install the chart (CRDs included) -> MinIO in-cluster with a seeded private bucket
#   -> the example Distribution with two regions (the second through a kubeconfig Secret to the
#   same API server, other namespace) -> operator Ready, edge pods Running in both namespaces,
#   Distribution Ready with per-region status -> each region's edge Service: Miss then Hit with
#   exactly one origin GET -> change a TTL: every pod reloads it (same pods, status updatedPods,
#   the edge's config_info metric), the cached object stays a Hit -> change resources: a new
#   ReplicaSet rolls -> delete an edge
#   Deployment: restored -> delete the Distribution: every region cleaned up -> helm uninstall
#   -> sidecar mode (examples/sidecar/: the app's Pod reads the bucket through 127.0.0.1:8080).
#
# The provider owns the cluster (create, load images, delete); this script owns everything it
# creates inside it and removes it again, also on failure (after printing diagnostics).
#
# Environment (set by the provider):
#   KUBECONFIG                      admin kubeconfig of the cluster (required)
#   KUBEFRONT_CLUSTER_PROVIDER      local|kind (informational; shown in logs)
#   KUBEFRONT_OPERATOR_IMAGE        operator image present on the node(s)  [kubefront/operator:e2e]
#   KUBEFRONT_EDGE_IMAGE            edge image present on the node(s)      [kubefront/edge:e2e]
#   KUBEFRONT_E2E_MINIO_IMAGE       MinIO server image  [the one in examples/minio/minio.yaml]
#   KUBEFRONT_E2E_MC_IMAGE          mc image for the seed Job  [the one in examples/minio/seed-job.yaml]
#   KUBEFRONT_E2E_REMOTE_SERVER     API server URL as seen from pods, for the second region's
#                                   kubeconfig  [https://kubernetes.default.svc]
#   KUBEFRONT_E2E_DISTRIBUTION      Distribution manifest  [examples/distribution.yaml]
#   KUBEFRONT_E2E_ORIGIN_METRIC     edge counter of origin requests  [kubefront_edge_origin_requests_total]
#   KUBEFRONT_E2E_TIMEOUT           seconds per wait  [300]
#   KUBEFRONT_E2E_APP_IMAGE         stand-in for the app container of examples/sidecar/ (any
#                                   image that keeps running)  [registry.k8s.io/pause:3.10]
#   KUBEFRONT_E2E_KEEP=1            keep the objects after a failure (for debugging)
#   HELM, KUBECTL                   binaries  [$KUBEFRONT_CACHE/bin/{helm,kubectl}, else PATH]
set -euo pipefail
cd "$(dirname "$0")/../.."

export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
: "${KUBECONFIG:?KUBECONFIG must point at the cluster under test}"
export KUBECONFIG
provider="${KUBEFRONT_CLUSTER_PROVIDER:-unknown}"
operator_image="${KUBEFRONT_OPERATOR_IMAGE:-kubefront/operator:e2e}"
edge_image="${KUBEFRONT_EDGE_IMAGE:-kubefront/edge:e2e}"
minio_image="${KUBEFRONT_E2E_MINIO_IMAGE:-}"
mc_image="${KUBEFRONT_E2E_MC_IMAGE:-}"
remote_server="${KUBEFRONT_E2E_REMOTE_SERVER:-https://kubernetes.default.svc}"
app_image="${KUBEFRONT_E2E_APP_IMAGE:-registry.k8s.io/pause:3.10}"
distribution_file="${KUBEFRONT_E2E_DISTRIBUTION:-examples/distribution.yaml}"
origin_metric="${KUBEFRONT_E2E_ORIGIN_METRIC:-kubefront_edge_origin_requests_total}"
timeout="${KUBEFRONT_E2E_TIMEOUT:-300}"
helm="${HELM:-$KUBEFRONT_CACHE/bin/helm}"
kubectl="${KUBECTL:-$KUBEFRONT_CACHE/bin/kubectl}"
[[ -x $helm ]] || helm=$(command -v helm)
[[ -x $kubectl ]] || kubectl=$(command -v kubectl)

release=kubefront
system_ns=kubefront-system
storage_ns=storage
sidecar_ns=shop
remote_sa=kubefront-remote
work=$(mktemp -d)
# Helm must not read or write the user's configuration.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

start=$(date +%s)
phase_start=$start
phase() {
  local now
  now=$(date +%s)
  echo "=== [e2e/$provider +$((now - start))s, previous phase $((now - phase_start))s] $*"
  phase_start=$now
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
k() { "$kubectl" "$@"; }

# --- polling helpers ---------------------------------------------------------------------------

# wait_until DESCRIPTION CMD...: retry CMD every 2 s until it succeeds or $timeout passes.
wait_until() {
  local what=$1 deadline=$(($(date +%s) + timeout))
  shift
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      echo "timed out after ${timeout}s waiting for: $what" >&2
      "$@" >&2 || true
      return 1
    fi
    sleep 2
  done
}

jsonpath() { # jsonpath NS KIND/NAME EXPR
  k -n "$1" get "$2" -o "jsonpath=$3" 2>/dev/null
}

pods_running() { # pods_running NS LABELS
  k -n "$1" get pods -l "$2" -o jsonpath='{.items[*].status.phase}' | grep -q Running
}

# --- port-forwards -----------------------------------------------------------------------------

forward_pids=()
fwd_port=""
# forward NS TARGET REMOTE_PORT: starts `kubectl port-forward` in the background and sets
# fwd_port to its local port. Not for use in $(...): the pid must be recorded in this shell.
forward() {
  local ns=$1 target=$2 port=$3 log i
  log="$work/pf-$ns-${target//\//-}-$port.log"
  k -n "$ns" port-forward "$target" ":$port" >"$log" 2>&1 &
  forward_pids+=($!)
  fwd_port=""
  for i in $(seq 1 150); do
    fwd_port=$(grep -oE 'Forwarding from 127\.0\.0\.1:[0-9]+' "$log" | head -1 | grep -oE '[0-9]+$' || true)
    [[ -z $fwd_port ]] || return 0
    kill -0 "${forward_pids[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "port-forward $ns/$target:$port did not start (try $i):" >&2
  cat "$log" >&2
  return 1
}

stop_forwards() {
  local pid
  for pid in "${forward_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${forward_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  forward_pids=()
}

# --- diagnostics and teardown ------------------------------------------------------------------

distribution=""
dist_ns=""
region_names=()
region_namespaces=()

diagnostics() {
  echo "=================== diagnostics ($provider) ==================="
  k get nodes -o wide || true
  k get distributions -A -o yaml || true
  for ns in "$system_ns" "$dist_ns" "${region_namespaces[@]}" "$sidecar_ns" "$storage_ns"; do
    [[ -n $ns ]] || continue
    echo "--- namespace $ns"
    k -n "$ns" get deployments,replicasets,pods,services,configmaps,secrets,pdb,jobs,leases -o wide || true
  done
  echo "--- operator logs"
  k -n "$system_ns" logs -l app.kubernetes.io/name=kubefront --all-containers --tail=300 --prefix || true
  k -n "$system_ns" logs -l app.kubernetes.io/name=kubefront --all-containers --tail=100 --prefix --previous || true
  echo "--- operator pods"
  k -n "$system_ns" describe pods -l app.kubernetes.io/name=kubefront || true
  for ns in "${region_namespaces[@]}"; do
    echo "--- edge pods in $ns"
    k -n "$ns" describe pods -l app.kubernetes.io/managed-by=kubefront-operator | tail -60 || true
    k -n "$ns" logs -l app.kubernetes.io/managed-by=kubefront-operator --all-containers --tail=100 --prefix || true
  done
  echo "--- MinIO / seed"
  k -n "$storage_ns" logs job/minio-seed --all-containers --tail=50 --prefix || true
  echo "--- events"
  k get events -A --sort-by=.lastTimestamp | tail -120 || true
  echo "=============================================================="
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  stop_forwards
  if ((rc != 0)); then
    diagnostics >&2 || true
    if [[ ${KUBEFRONT_E2E_KEEP:-} == 1 ]]; then
      echo "KUBEFRONT_E2E_KEEP=1: leaving the objects in place" >&2
      rm -rf "$work"
      exit "$rc"
    fi
  fi
  phase "teardown"
  if [[ -n $distribution ]] && k -n "$dist_ns" get distribution "$distribution" >/dev/null 2>&1; then
    k -n "$dist_ns" delete distribution "$distribution" --wait --timeout=60s ||
      # The operator is gone or stuck: drop its finalizer so the namespace can go.
      k -n "$dist_ns" patch distribution "$distribution" --type merge -p '{"metadata":{"finalizers":null}}' || true
  fi
  "$helm" uninstall "$release" -n "$system_ns" --wait --timeout 120s >/dev/null 2>&1 || true
  local ns
  for ns in "$dist_ns" "${region_namespaces[@]}" "$sidecar_ns" "$storage_ns" "$system_ns"; do
    if [[ -n $ns && $ns != default ]]; then
      k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
  done
  k delete crd distributions.kubefront.io --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
  if ((rc == 0)); then
    phase "journey passed"
  else
    echo "=== [e2e/$provider +$(($(date +%s) - start))s] journey FAILED (exit $rc)" >&2
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- 0. preflight ------------------------------------------------------------------------------

phase "preflight ($provider): $("$kubectl" version --client 2>/dev/null | head -1), $("$helm" version --short)"
command -v curl >/dev/null || fail "curl is required"
[[ -f $distribution_file ]] || fail "$distribution_file not found"
k get --raw=/readyz >/dev/null || fail "API server not ready"
node_ready() { k get nodes -o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}' | grep -q True; }
wait_until "a Ready node" node_ready

# --- 1. helm install ---------------------------------------------------------------------------

phase "helm install $release (operator $operator_image, edge $edge_image)"
image_args() { # image_args PREFIX REF -> --set PREFIX.repository=... --set PREFIX.tag=...
  local prefix=$1 ref=$2
  [[ $ref == *:* && ${ref##*:} != */* ]] || fail "image $ref needs an explicit tag"
  echo "--set=$prefix.repository=${ref%:*}"
  echo "--set=$prefix.tag=${ref##*:}"
}
mapfile -t set_args < <(image_args image "$operator_image"; image_args edgeImage "$edge_image")
"$helm" install "$release" charts/kubefront --namespace "$system_ns" --create-namespace \
  "${set_args[@]}" --set image.pullPolicy=IfNotPresent --set logFormat=text \
  --wait --timeout "${timeout}s"
k wait --for condition=Established crd/distributions.kubefront.io --timeout="${timeout}s"
k -n "$system_ns" rollout status deployment/"$release" --timeout="${timeout}s"
k -n "$system_ns" wait pod -l app.kubernetes.io/name=kubefront --for condition=Ready --timeout="${timeout}s"
# The operator runs as the chart says: non-root 65532 with the edge image it was given.
uid=$(jsonpath "$system_ns" deployment/"$release" '{.spec.template.spec.containers[0].securityContext.runAsUser}')
[[ $uid == 65532 ]] || fail "operator runAsUser is '$uid'"

# Distribution facts come from the manifest itself, so the journey follows the example.
# (Client-side parsing of a custom resource needs its CRD, hence only now.) The file may hold
# more documents (the example carries its credentials Secret): take the Distribution's.
dist_doc="$work/distribution-only.yaml"
awk '/^---/ { if (index("\n" doc, "\nkind: Distribution\n")) { printf "%s", doc; found = 1; exit } doc = ""; next }
  { doc = doc $0 "\n" }
  END { if (!found && index("\n" doc, "\nkind: Distribution\n")) printf "%s", doc }' "$distribution_file" >"$dist_doc"
[[ -s $dist_doc ]] || fail "$distribution_file has no Distribution"
distribution=$(k create --dry-run=client -f "$dist_doc" -o jsonpath='{.metadata.name}')
dist_ns=$(k create --dry-run=client -f "$dist_doc" -o jsonpath='{.metadata.namespace}')
dist_ns=${dist_ns:-kubefront-demo}
read -r -a region_names <<<"$(k create --dry-run=client -f "$dist_doc" -o jsonpath='{.spec.regions[*].name}')"
((${#region_names[@]} >= 2)) || fail "$distribution_file must name at least two regions (got ${region_names[*]:-none})"
credentials_secret=$(k create --dry-run=client -f "$dist_doc" -o jsonpath='{.spec.origin.s3.credentialsSecretRef.name}')
bucket=$(k create --dry-run=client -f "$dist_doc" -o jsonpath='{.spec.origin.s3.bucket}')
remote_region=""
remote_secret=""
remote_key=""
for i in "${!region_names[@]}"; do
  r=${region_names[$i]}
  ns=$(k create --dry-run=client -f "$dist_doc" -o jsonpath="{.spec.regions[$i].namespace}")
  region_namespaces+=("${ns:-$dist_ns}")
  secret=$(k create --dry-run=client -f "$dist_doc" -o jsonpath="{.spec.regions[$i].cluster.kubeconfigSecretRef.name}")
  if [[ -n $secret ]]; then
    remote_region=$r
    remote_secret=$secret
    remote_key=$(k create --dry-run=client -f "$dist_doc" -o jsonpath="{.spec.regions[$i].cluster.kubeconfigSecretRef.key}")
    remote_ns=${ns:-$dist_ns}
  fi
done
[[ -n $remote_region ]] || fail "$distribution_file has no region with cluster.kubeconfigSecretRef"
[[ $bucket == assets ]] || fail "$distribution_file must use the bucket 'assets' seeded by examples/minio"
[[ $remote_ns != "$dist_ns" ]] || fail "the kubeconfig region must use another namespace than $dist_ns"
echo "distribution $dist_ns/$distribution, regions: ${region_names[*]} in ${region_namespaces[*]} (remote: $remote_region via secret $remote_secret)"


# --- 2. MinIO ----------------------------------------------------------------------------------

phase "MinIO in namespace $storage_ns, seeded private bucket"
minio_manifest="$work/minio.yaml"
seed_manifest="$work/seed-job.yaml"
cp examples/minio/minio.yaml "$minio_manifest"
cp examples/minio/seed-job.yaml "$seed_manifest"
[[ -z $minio_image ]] || sed -i "s#image: quay.io/minio/minio:.*#image: $minio_image#" "$minio_manifest"
[[ -z $mc_image ]] || sed -i "s#image: quay.io/minio/mc:.*#image: $mc_image#" "$seed_manifest"
k apply -f "$minio_manifest"
k -n "$storage_ns" rollout status deployment/minio --timeout="${timeout}s"
k apply -f "$seed_manifest"
k -n "$storage_ns" wait job/minio-seed --for condition=Complete --timeout="${timeout}s"
# Private: an anonymous GET is refused, so every edge answer below went through SigV4.
forward "$storage_ns" svc/minio 9000
anon=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$fwd_port/assets/hello.txt")
[[ $anon == 403 ]] || fail "anonymous GET of the bucket returned $anon, want 403"
stop_forwards

# --- 3. the Distribution -----------------------------------------------------------------------

phase "namespaces, origin credentials and the kubeconfig Secret for region $remote_region"
for ns in "$dist_ns" "${region_namespaces[@]}"; do
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
done
access_key=$(jsonpath "$storage_ns" secret/minio-edge-user '{.data.accessKeyId}' | base64 -d)
secret_key=$(jsonpath "$storage_ns" secret/minio-edge-user '{.data.secretAccessKey}' | base64 -d)
k -n "$dist_ns" create secret generic "$credentials_secret" \
  --from-literal=accessKeyId="$access_key" --from-literal=secretAccessKey="$secret_key" \
  --dry-run=client -o yaml | k apply -f -

# The "remote" cluster is this API server seen through a ServiceAccount that may only manage
# edge objects in the remote region's namespace, as a real second cluster's kubeconfig would.
sed "s/NAMESPACE/$remote_ns/g; s/SERVICE_ACCOUNT/$remote_sa/g" tests/e2e/manifests/remote-access.yaml | k apply -f -
token=$(k -n "$remote_ns" create token "$remote_sa" --duration=2h)
wait_until "configmap $remote_ns/kube-root-ca.crt" k -n "$remote_ns" get configmap kube-root-ca.crt
ca=$(jsonpath "$remote_ns" configmap/kube-root-ca.crt '{.data.ca\.crt}' | base64 | tr -d '\n')
cat >"$work/remote.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: remote
    cluster:
      server: $remote_server
      certificate-authority-data: $ca
users:
  - name: $remote_sa
    user:
      token: $token
contexts:
  - name: remote
    context: {cluster: remote, user: $remote_sa, namespace: $remote_ns}
current-context: remote
EOF
k -n "$dist_ns" create secret generic "$remote_secret" --from-file="${remote_key:-value}=$work/remote.kubeconfig" \
  --dry-run=client -o yaml | k apply -f -

phase "apply $distribution_file"
k -n "$dist_ns" apply -f "$distribution_file"

phase "edge pods Running in every region, Distribution Ready"
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  wait_until "deployment $ns/$name" k -n "$ns" get deployment "$name"
  k -n "$ns" rollout status deployment/"$name" --timeout="${timeout}s"
  labels="kubefront.io/distribution=$distribution,kubefront.io/region=$r"
  wait_until "Running edge pods in $ns" pods_running "$ns" "$labels"
  for kind in configmap service deployment; do
    managed=$(jsonpath "$ns" "$kind/$name" '{.metadata.labels.app\.kubernetes\.io/managed-by}')
    [[ $managed == kubefront-operator ]] || fail "$kind $ns/$name managed-by='$managed'"
  done
done
k -n "$dist_ns" wait distribution/"$distribution" --for condition=Ready --timeout="${timeout}s"
region_status() { # region_status REGION FIELD
  jsonpath "$dist_ns" distribution/"$distribution" "{.status.regions[?(@.name==\"$1\")].$2}"
}
region_ready() {
  local n
  n=$(region_status "$1" readyReplicas)
  [[ ${n:-0} =~ ^[0-9]+$ ]] && ((n >= 1))
}
for r in "${region_names[@]}"; do
  wait_until "status of region $r: readyReplicas >= 1" region_ready "$r"
  [[ -n $(region_status "$r" configHash) ]] || fail "region $r has no configHash in status"
done
generation=$(jsonpath "$dist_ns" distribution/"$distribution" '{.metadata.generation}')
observed=$(jsonpath "$dist_ns" distribution/"$distribution" '{.status.observedGeneration}')
[[ $generation == "$observed" ]] || fail "observedGeneration $observed != generation $generation"

# --- 4. Miss -> Hit with one origin GET per region ---------------------------------------------

# origin_gets NS LABELS: sets gets_total to the origin GET counter summed over a region's pods.
gets_total=0
origin_gets() {
  local ns=$1 labels=$2 pod value
  gets_total=0
  for pod in $(k -n "$ns" get pods -l "$labels" --field-selector=status.phase=Running -o name); do
    forward "$ns" "$pod" 9090
    curl -sf "http://127.0.0.1:$fwd_port/metrics" >"$work/metrics" || fail "GET $pod:9090/metrics failed"
    # A labelled family is absent until its first sample: absent counts as 0 (the Miss+Hit
    # check below then fails with "0 origin GETs" if the name is wrong).
    value=$(awk -v m="$origin_metric" '
      $1 ~ "^"m"({|$)" && ($1 !~ /method=/ || $1 ~ /method="GET"/) { sum += $NF } END { printf "%d", sum }' "$work/metrics")
    gets_total=$((gets_total + value))
  done
}

phase "fetch through each region's edge Service: Miss then Hit, one origin GET"
object=hello.txt
expected_body=$(k -n "$storage_ns" get configmap minio-seed -o jsonpath='{.data.hello\.txt}')
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  labels="kubefront.io/distribution=$distribution,kubefront.io/region=$r"
  # The viewer port: named http or viewer, else the Service's first port.
  svc_port=$(jsonpath "$ns" service/"$name" '{.spec.ports[?(@.name=="http")].port}')
  [[ -n $svc_port ]] || svc_port=$(jsonpath "$ns" service/"$name" '{.spec.ports[?(@.name=="viewer")].port}')
  [[ -n $svc_port ]] || svc_port=$(jsonpath "$ns" service/"$name" '{.spec.ports[0].port}')
  origin_gets "$ns" "$labels"
  before=$gets_total
  forward "$ns" service/"$name" "$svc_port"
  port=$fwd_port
  for want in Miss Hit; do
    curl -sS -D "$work/h" -o "$work/b" "http://127.0.0.1:$port/$object"
    status=$(head -1 "$work/h" | awk '{print $2}')
    xcache=$(grep -i '^x-cache:' "$work/h" | awk '{print $2}' | tr -d '\r')
    [[ $status == 200 ]] || { cat "$work/h" "$work/b" >&2; fail "region $r: GET /$object -> $status"; }
    [[ $xcache == "$want" ]] || { cat "$work/h" >&2; fail "region $r: X-Cache '$xcache', want $want"; }
    [[ $(cat "$work/b") == "$expected_body" ]] || fail "region $r: body differs from the origin object"
    grep -qi '^cache-status:' "$work/h" || fail "region $r: no Cache-Status header"
    echo "region $r: GET /$object -> $status X-Cache: $xcache"
  done
  origin_gets "$ns" "$labels"
  after=$gets_total
  stop_forwards
  (( after - before == 1 )) || fail "region $r: $((after - before)) origin GETs for Miss+Hit, want exactly 1 ($origin_metric)"
  echo "region $r: exactly one origin GET ($before -> $after)"
done

# --- 5. config changes reload in place; process changes roll ----------------------------------

phase "change defaultTTL: every pod reloads the new config, no pod restarts, the cache stays warm"
declare -A old_hash old_rs old_uids
replicasets() { # replicasets NS LABELS: sorted RS names
  k -n "$1" get replicasets -l "$2" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort
}
pod_uids() { # pod_uids NS LABELS: sorted UIDs of the region's pods
  k -n "$1" get pods -l "$2" -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' | sort
}
hash_changed() { # hash_changed REGION OLD_HASH
  local h
  h=$(region_status "$1" configHash)
  [[ -n $h && $h != "$2" ]]
}
config_loaded() { # config_loaded REGION: every pod of the region reports the status configHash
  local pods updated
  pods=$(region_status "$1" pods)
  updated=$(region_status "$1" updatedPods)
  [[ ${pods:-0} =~ ^[0-9]+$ ]] && ((pods >= 1)) && [[ $updated == "$pods" ]]
}
new_replicaset() { # new_replicaset NS LABELS OLD_NAMES: some RS is not among OLD_NAMES
  replicasets "$1" "$2" | grep -vxF -e "${3:-<none>}" | grep -q .
}
# edge_config_hashes NS LABELS: the config hash each Running pod reports (kubefront_edge_config_info).
edge_config_hashes() {
  local ns=$1 labels=$2 pod
  for pod in $(k -n "$ns" get pods -l "$labels" --field-selector=status.phase=Running -o name); do
    forward "$ns" "$pod" 9090
    curl -sf "http://127.0.0.1:$fwd_port/metrics" |
      sed -n 's/^kubefront_edge_config_info{hash="\([0-9a-f]*\)"} 1$/\1/p'
  done
  stop_forwards
}
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]}
  labels="kubefront.io/distribution=$distribution,kubefront.io/region=$r"
  old_hash[$r]=$(region_status "$r" configHash)
  old_rs[$r]=$(replicasets "$ns" "$labels")
  old_uids[$r]=$(pod_uids "$ns" "$labels")
done
old_ttl=$(jsonpath "$dist_ns" distribution/"$distribution" '{.spec.cache.defaultTTL}')
new_ttl=1h
[[ $old_ttl != "$new_ttl" ]] || new_ttl=2h
reload_start=$(date +%s)
k -n "$dist_ns" patch distribution "$distribution" --type merge -p "{\"spec\":{\"cache\":{\"defaultTTL\":\"$new_ttl\"}}}"
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  labels="kubefront.io/distribution=$distribution,kubefront.io/region=$r"
  wait_until "new configHash for region $r" hash_changed "$r" "${old_hash[$r]}"
  wait_until "every pod of region $r on the new config (status updatedPods == pods)" config_loaded "$r"
  h=$(region_status "$r" configHash)
  reported=$(edge_config_hashes "$ns" "$labels" | sort -u)
  [[ $reported == "$h" ]] || fail "region $r: pods report config '$reported', status says $h"
  [[ $(pod_uids "$ns" "$labels") == "${old_uids[$r]}" ]] || fail "region $r: pods were replaced by a config change"
  [[ $(replicasets "$ns" "$labels") == "${old_rs[$r]}" ]] || fail "region $r: a config change made a new ReplicaSet"
  # The object cached before the change is still a Hit: the cache survived the reload.
  forward "$ns" service/"$name" "$(jsonpath "$ns" service/"$name" '{.spec.ports[0].port}')"
  curl -sS -D "$work/h" -o "$work/b" "http://127.0.0.1:$fwd_port/$object"
  xcache=$(grep -i '^x-cache:' "$work/h" | awk '{print $2}' | tr -d '\r')
  stop_forwards
  [[ $xcache == Hit ]] || { cat "$work/h" >&2; fail "region $r: GET /$object after the reload: X-Cache '$xcache', want Hit"; }
  echo "region $r: configHash ${old_hash[$r]} -> $h on $(region_status "$r" updatedPods)/$(region_status "$r" pods) pods after $(($(date +%s) - reload_start))s, same pods, /$object still a Hit"
done
k -n "$dist_ns" wait distribution/"$distribution" --for condition=Ready --timeout="${timeout}s"

phase "change resources: a process-level change still rolls the Deployment"
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]}
  old_rs[$r]=$(replicasets "$ns" "kubefront.io/distribution=$distribution,kubefront.io/region=$r")
  k -n "$dist_ns" patch distribution "$distribution" --type json -p "[{\"op\": \"add\", \"path\": \"/spec/regions/$i/resources\",
    \"value\": {\"requests\": {\"cpu\": \"50m\", \"memory\": \"256Mi\"}, \"limits\": {\"memory\": \"768Mi\"}}}]"
done
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  labels="kubefront.io/distribution=$distribution,kubefront.io/region=$r"
  wait_until "a new ReplicaSet for $ns/$name" new_replicaset "$ns" "$labels" "${old_rs[$r]}"
  k -n "$ns" rollout status deployment/"$name" --timeout="${timeout}s"
  echo "region $r: resources change rolled a new ReplicaSet"
done
k -n "$dist_ns" wait distribution/"$distribution" --for condition=Ready --timeout="${timeout}s"

# --- 6. drift: a deleted edge Deployment comes back --------------------------------------------

phase "delete each region's edge Deployment: the operator restores it"
recreated() { # recreated NS KIND/NAME OLD_UID
  local u
  u=$(jsonpath "$1" "$2" '{.metadata.uid}')
  [[ -n $u && $u != "$3" ]]
}
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  old_uid=$(jsonpath "$ns" deployment/"$name" '{.metadata.uid}')
  k -n "$ns" delete deployment "$name" --wait=true --timeout="${timeout}s"
  wait_until "deployment $ns/$name recreated" recreated "$ns" "deployment/$name" "$old_uid"
  k -n "$ns" rollout status deployment/"$name" --timeout="${timeout}s"
  echo "region $r: deployment restored (uid $old_uid -> $(jsonpath "$ns" deployment/"$name" '{.metadata.uid}'))"
done
k -n "$dist_ns" wait distribution/"$distribution" --for condition=Ready --timeout="${timeout}s"

# --- 6b. signed URLs: a key group from a Secret, required by one behavior ----------------------

phase "signed URLs: key group Secret + a signed behavior; unsigned 403, signed 200 in every region"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/signing.pem" 2>/dev/null
openssl pkey -in "$work/signing.pem" -pubout -out "$work/signing.pub"
k -n "$dist_ns" create secret generic e2e-signing-keys --from-file=KE2E="$work/signing.pub" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
[[ -n $(jsonpath "$dist_ns" distribution/"$distribution" '{.spec.behaviors[0].pathPattern}') ]] ||
  fail "$distribution_file needs at least one behavior (the signed one is inserted first)"
for i in "${!region_names[@]}"; do
  r=${region_names[$i]}
  old_hash[$r]=$(region_status "$r" configHash)
done
k -n "$dist_ns" patch distribution "$distribution" --type json -p "[
  {\"op\": \"add\", \"path\": \"/spec/trustedKeyGroups\", \"value\": [{\"name\": \"e2e\", \"secretRef\": {\"name\": \"e2e-signing-keys\"}}]},
  {\"op\": \"add\", \"path\": \"/spec/behaviors/0\", \"value\": {\"pathPattern\": \"/$object\", \"trustedKeyGroups\": [\"e2e\"]}}]"
# sign_canned URL EXPIRES: CloudFront canned-policy query (ECDSA P-256, SHA-256) made by openssl.
sign_canned() {
  local sig
  sig=$(printf '{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%s}}}]}' "$1" "$2" |
    openssl dgst -sha256 -sign "$work/signing.pem" | base64 -w0 | tr '+=/' '-_~')
  printf 'Expires=%s&Signature=%s&Key-Pair-Id=KE2E&Hash-Algorithm=SHA256' "$2" "$sig"
}
for i in "${!region_names[@]}"; do
  r=${region_names[$i]} ns=${region_namespaces[$i]} name="$distribution-${region_names[$i]}"
  wait_until "new configHash (key group) for region $r" hash_changed "$r" "${old_hash[$r]}"
  wait_until "every pod of region $r on the key group config" config_loaded "$r"
  cm_keys=$(k -n "$ns" get configmap -l "kubefront.io/distribution=$distribution,kubefront.io/region=$r" -o yaml)
  grep -q 'KE2E' <<<"$cm_keys" || fail "region $r: the edge ConfigMap does not carry key KE2E"
  svc_port=$(jsonpath "$ns" service/"$name" '{.spec.ports[0].port}')
  forward "$ns" service/"$name" "$svc_port"
  base="http://127.0.0.1:$fwd_port"
  expires=$(( $(date +%s) + 600 ))
  query=$(sign_canned "$base/$object" "$expires")
  code=$(curl -s -o "$work/b" -w '%{http_code}' "$base/$object")
  { [[ $code == 403 ]] && grep -q missing "$work/b"; } || fail "region $r: unsigned GET /$object -> $code $(cat "$work/b")"
  code=$(curl -s -o "$work/b" -w '%{http_code}' "$base/$object?${query/Expires=$expires/Expires=$((expires + 1))}")
  { [[ $code == 403 ]] && grep -q bad-signature "$work/b"; } || fail "region $r: tampered Expires -> $code $(cat "$work/b")"
  code=$(curl -s -o "$work/b" -w '%{http_code}' "$base/$object?$query")
  [[ $code == 200 && $(cat "$work/b") == "$expected_body" ]] || fail "region $r: signed GET /$object -> $code $(cat "$work/b")"
  stop_forwards
  echo "region $r: unsigned 403 missing, tampered 403 bad-signature, openssl-signed 200"
done
k -n "$dist_ns" wait distribution/"$distribution" --for condition=Ready --timeout="${timeout}s"

# --- 7. delete the Distribution: every region cleaned up ---------------------------------------

phase "delete the Distribution: every region cleaned up"
k -n "$dist_ns" delete distribution "$distribution" --wait=true --timeout="${timeout}s"
leftovers() { # leftovers NS: owned objects still present
  k -n "$1" get deployments,replicasets,services,configmaps,secrets,poddisruptionbudgets \
    -l "kubefront.io/distribution=$distribution" -o name
  k -n "$1" get pods -l "kubefront.io/distribution=$distribution" -o name
}
no_leftovers() { [[ -z $(leftovers "$1") ]]; }
for ns in "${region_namespaces[@]}"; do
  wait_until "no objects of $distribution left in $ns" no_leftovers "$ns" || { leftovers "$ns" >&2; fail "cleanup of $ns"; }
  echo "namespace $ns: clean"
done
distribution=""

# --- 8. helm uninstall -------------------------------------------------------------------------

phase "helm uninstall"
"$helm" uninstall "$release" -n "$system_ns" --wait --timeout "${timeout}s"
operator_gone() { ! k -n "$system_ns" get deployment "$release" >/dev/null 2>&1; }
wait_until "operator Deployment gone" operator_gone

# --- 9. sidecar mode ---------------------------------------------------------------------------

phase "sidecar mode: examples/sidecar with the edge as a native sidecar"
sidecar_manifest="$work/sidecar.yaml"
# The example as shipped, with the images under test, one replica and a stand-in app container.
sed -e "s#image: kubefront/edge:.*#image: $edge_image#" \
  -e "s#image: registry.example.com/shop/web:.*#image: $app_image#" \
  -e "s#^  replicas: 2#  replicas: 1#" examples/sidecar/deployment.yaml >"$sidecar_manifest"
grep -q "image: $edge_image" "$sidecar_manifest" || fail "examples/sidecar/deployment.yaml: edge image not found"
k apply -f "$sidecar_manifest"
k apply -f examples/sidecar/s3-credentials.yaml -f examples/sidecar/edge-config.yaml
k -n "$sidecar_ns" rollout status deployment/shop --timeout="${timeout}s"
pod=$(k -n "$sidecar_ns" get pods -l app.kubernetes.io/name=shop --field-selector=status.phase=Running -o name | head -1)
[[ -n $pod ]] || fail "no Running shop pod"
ready=$(jsonpath "$sidecar_ns" "$pod" '{.status.initContainerStatuses[?(@.name=="assets-cache")].ready}')
[[ $ready == true ]] || fail "sidecar assets-cache not ready ($ready)"
# kubectl port-forward connects inside the Pod's network namespace, as the app would: the
# loopback-only viewer port is reachable there.
forward "$sidecar_ns" "$pod" 8080
for want in Miss Hit; do
  curl -sS -D "$work/h" -o "$work/b" "http://127.0.0.1:$fwd_port/$object"
  status=$(head -1 "$work/h" | awk '{print $2}')
  xcache=$(grep -i '^x-cache:' "$work/h" | awk '{print $2}' | tr -d '\r')
  [[ $status == 200 && $xcache == "$want" ]] || { cat "$work/h" >&2; fail "sidecar: GET /$object -> $status X-Cache '$xcache', want 200 $want"; }
  [[ $(cat "$work/b") == "$expected_body" ]] || fail "sidecar: body differs from the origin object"
  echo "sidecar: GET /$object -> $status X-Cache: $xcache"
done
stop_forwards
# The viewer port is not on the Pod IP: only the admin port (probes, metrics) is.
ports=$(jsonpath "$sidecar_ns" "$pod" '{.spec.initContainers[?(@.name=="assets-cache")].ports[*].containerPort}')
[[ $ports == 9090 ]] || fail "sidecar declares ports '$ports', want only the admin port 9090"
k delete namespace "$sidecar_ns" --wait=false >/dev/null
