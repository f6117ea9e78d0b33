#!/usr/bin/env bash
# Runs the exact mc commands of examples/minio/seed-job.yaml (every init container, then the main
# container, with the Job's environment and $(VAR) expansion) against a real MinIO server on
# loopback, then checks what the e2e journey relies on: anonymous GET 403, the edge user's
# signed GET 200 with the seeded body, the edge user's PUT 403.
#
#   tests/e2e/check-seed-job.sh     (MinIO and mc from tests/cluster/build, cached)
#
# A cheap (~5 s warm) check of the example without a cluster; the e2e journey runs the Job itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
bin="$KUBEFRONT_CACHE/bin"
[[ -x $bin/minio && -x $bin/mc ]] || tests/cluster/build minio mc
py=python3
[[ -x $KUBEFRONT_CACHE/venv/chart-tools/bin/python ]] && py=$KUBEFRONT_CACHE/venv/chart-tools/bin/python

work=$(mktemp -d)
minio_pid=""
cleanup() {
  if [[ -n $minio_pid ]]; then
    kill "$minio_pid" 2>/dev/null || true
    wait "$minio_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret_value() { # secret_value NAME KEY: a stringData value from examples/minio/minio.yaml
  "$py" - "$1" "$2" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open("examples/minio/minio.yaml")):
    if d and d["kind"] == "Secret" and d["metadata"]["name"] == sys.argv[1]:
        print(d["stringData"][sys.argv[2]])
EOF
}
root_user=$(secret_value minio-root MINIO_ROOT_USER)
root_password=$(secret_value minio-root MINIO_ROOT_PASSWORD)
edge_key=$(secret_value minio-edge-user accessKeyId)
edge_secret=$(secret_value minio-edge-user secretAccessKey)

MINIO_ROOT_USER=$root_user MINIO_ROOT_PASSWORD=$root_password MINIO_BROWSER=off MINIO_REGION=us-east-1 \
  "$bin/minio" server --quiet --address "127.0.0.1:$port" --certs-dir "$work/certs" "$work/data" \
  >"$work/minio.log" 2>&1 &
minio_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/minio/health/ready" && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/minio/health/ready" || { cat "$work/minio.log" >&2; exit 1; }

# The Job's containers, in order, with the in-cluster Service replaced by the loopback server.
MINIO_ROOT_USER=$root_user MINIO_ROOT_PASSWORD=$root_password EDGE_ACCESS_KEY=$edge_key \
  EDGE_SECRET_KEY=$edge_secret MC_CONFIG_DIR="$work/mc" MC_BIN="$bin/mc" SEED_DIR="$work/seed" \
  MINIO_URL="http://127.0.0.1:$port" "$py" - <<'EOF'
import os, re, subprocess, sys, yaml
docs = [d for d in yaml.safe_load_all(open("examples/minio/seed-job.yaml")) if d]
(cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
(job,) = [d for d in docs if d["kind"] == "Job"]
seed = os.environ["SEED_DIR"]
os.makedirs(seed)
for name, text in cm["data"].items():
    with open(os.path.join(seed, name), "w") as f:
        f.write(text)
pod = job["spec"]["template"]["spec"]
for c in pod["initContainers"] + pod["containers"]:
    env = dict(os.environ)
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], e["value"])
    # http://user:password@minio.storage.svc:9000 -> same credentials, loopback server
    env["MC_HOST_minio"] = re.sub(r"^http://([^@]+)@.*$", lambda m: os.environ["MINIO_URL"].replace(
        "http://", "http://" + m.group(1) + "@"), env["MC_HOST_minio"])
    env["MC_CONFIG_DIR"] = os.environ["MC_CONFIG_DIR"]
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a).replace("/seed/", seed + "/") for a in c["args"]]
    r = subprocess.run([os.environ["MC_BIN"], *args], env=env, capture_output=True, text=True)
    print(f"  {c['name']}: mc {' '.join(c['args'])} -> exit {r.returncode}")
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
        sys.exit(1)
EOF

fail() { echo "FAIL: $*" >&2; exit 1; }
url="http://127.0.0.1:$port/assets/hello.txt"
anon=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[[ $anon == 403 ]] || fail "anonymous GET -> $anon, want 403"
body=$(curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$edge_key:$edge_secret" "$url") || fail "signed GET as the edge user failed"
[[ $body == "hello from the origin" ]] || fail "signed GET body '$body'"
put=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data x --aws-sigv4 aws:amz:us-east-1:s3 \
  --user "$edge_key:$edge_secret" "http://127.0.0.1:$port/assets/written-by-edge.txt")
[[ $put == 403 ]] || fail "PUT as the read-only edge user -> $put, want 403"
echo "seed Job OK: private bucket (anonymous 403), edge user may read (200) but not write (403)"
