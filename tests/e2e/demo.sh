#!/usr/bin/env bash
# Runs the README's main command, scripts/demo, as a user would and checks what it promises:
# the edge serves the private bucket (Miss, then Hit), the custom 404 page, MinIO itself refuses
# anonymous reads, and stopping the demo stops every process it started.
#
#   tests/e2e/demo.sh            (KUBEFRONT_EDGE_BIN: an already built kubefront-edge, else the
#                                 demo builds one; MinIO/mc from $KUBEFRONT_CACHE/bin)
set -euo pipefail
cd "$(dirname "$0")/../.."
export KUBEFRONT_CACHE="${KUBEFRONT_CACHE:-$HOME/.cache/kubefront}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "demo.sh: FAIL: $*" >&2; echo "--- demo output" >&2; cat "$out" >&2; exit 1; }

viewer=$(free_port)
admin=$(free_port)
minio=$(free_port)
out=$(mktemp /tmp/kubefront-demo-test.XXXXXX)
demo_pid=
cleanup() {
  if [[ -n $demo_pid ]] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -f "$out"
}
trap cleanup EXIT

DEMO_PORT=$viewer DEMO_ADMIN_PORT=$admin DEMO_MINIO_PORT=$minio scripts/demo >"$out" 2>&1 &
demo_pid=$!
# The demo prints its instructions once MinIO and the edge are both ready (first run on a warm
# machine: a few seconds; generous bound for a loaded 2-core machine).
for _ in $(seq 1 600); do
  grep -q "kubefront-edge is serving the private bucket" "$out" && break
  kill -0 "$demo_pid" 2>/dev/null || fail "scripts/demo exited before it was ready"
  sleep 0.2
done
grep -q "kubefront-edge is serving the private bucket" "$out" || fail "not ready after 120 s"

base="http://127.0.0.1:$viewer"
xcache() { curl -s -o /dev/null -D - "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}'; }
first=$(xcache "$base/")
second=$(xcache "$base/")
[[ $first == Miss* && $second == Hit* ]] || fail "GET / gave X-Cache '$first' then '$second' (want Miss, Hit)"
curl -fsS "$base/" | grep -q "Served by kubefront-edge from a private MinIO bucket" || fail "index.html body"

code=$(curl -s -o /tmp/kubefront-demo-404.$$ -w '%{http_code}' "$base/nope")
body=$(cat /tmp/kubefront-demo-404.$$)
rm -f /tmp/kubefront-demo-404.$$
[[ $code == 404 && $body == *"404: not here"* ]] || fail "GET /nope: $code '$body' (want the 404 page)"
# The page answers for the negative entry (10 s), not for the page object (1 h): its Age,
# Cache-Status ttl and Cache-Control describe the 404.
headers=$(curl -s -o /dev/null -D - "$base/nope" | tr -d '\r')
ttl=$(sed -n 's/^cache-status:.*ttl=\([0-9-]*\).*/\1/Ip' <<<"$headers")
max_age=$(sed -n 's/^cache-control:.*max-age=\([0-9]*\).*/\1/Ip' <<<"$headers")
age=$(sed -n 's/^age: *\([0-9]*\).*/\1/Ip' <<<"$headers")
[[ -n $ttl && $ttl -le 10 && -n $max_age && $max_age -le 10 && -n $age && $age -le 10 ]] ||
  fail "404 page freshness: ttl='$ttl' max-age='$max_age' age='$age' (want <= the 10 s negative TTL)"$'\n'"$headers"

range=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H 'Range: bytes=0-9' "$base/css/site.css")
[[ $range == "206 10" ]] || fail "Range bytes=0-9: '$range' (want 206 of 10 bytes)"

anon=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$minio/site/index.html")
[[ $anon == 403 ]] || fail "anonymous GET at MinIO gave $anon (the bucket must be private)"

# Stopping the demo stops MinIO and the edge: their ports close.
kill -TERM "$demo_pid"
wait "$demo_pid" 2>/dev/null || true
demo_pid=
for p in "$viewer" "$admin" "$minio"; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || break; sleep 0.1; done
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then fail "port $p still open after the demo stopped"; fi
done
echo "demo.sh: scripts/demo served Miss->Hit, the 404 page (with the negative entry's freshness), a Range, kept MinIO private, and stopped cleanly"
