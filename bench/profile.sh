#!/usr/bin/env bash
# Where vane's CPU goes under scenario a (bench/README.md, "Where the time goes"): one nginx
# origin on three loopback addresses, vane in front of it, wrk -t2 -c64 for 10 s. Prints
# requests/s, p99, and vane's user and system CPU per request; with PERF=1 also records a
# call-graph profile (perf, from Debian's linux-perf), with STRACE=1 counts vane's syscalls.
#
#   bench/profile.sh                      # target/release/vane, 1 worker
#   WORKERS=2 PERF=1 bench/profile.sh     # then: perf report -i $OUT/perf.data --no-children
#   VANE=/path/to/other/vane bench/profile.sh
#   VANE=/path/to/older/vane VANE_FLAGS="" bench/profile.sh   # a build without today's flags
set -euo pipefail
cd "$(dirname "$0")/.."
VANE=${VANE:-target/release/vane}
WORKERS=${WORKERS:-1}
OUT=${OUT:-target/profile}
# Flags beyond the listeners every vane has: the metrics and debug listeners off the default
# ports, and no access log (scenario a measures the proxy; bench/run.sh measures the log).
VANE_FLAGS=${VANE_FLAGS---metrics-addr 127.0.0.1:18191 --debug-addr 127.0.0.1:18192 --access-log off}
PORT=18101
for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is needed (bench/run.sh installs it)"; exit 1; }
done
[[ -x $VANE ]] || cargo build --release --bin vane
rm -rf "$OUT" && mkdir -p "$OUT/manifests"
OUT=$(cd "$OUT" && pwd)

RUN_USER=""
[[ $(id -u) -eq 0 ]] && RUN_USER="user root;"
cat >"$OUT/origin.conf" <<EOF
$RUN_USER
worker_processes 1; pid $OUT/origin.pid; error_log $OUT/origin.err warn;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
    server {
        listen 127.0.0.2:$PORT; listen 127.0.0.3:$PORT; listen 127.0.0.4:$PORT;
        location / { default_type text/plain; return 200 "$(printf 'x%.0s' $(seq 100))"; }
    }
}
EOF
cat >"$OUT/manifests/routes.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: vane}
spec: {controller: vane.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: profile, namespace: default}
spec:
  ingressClassName: vane
  rules: [{http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: origins, port: {name: http}}}}]}}]
---
apiVersion: v1
kind: Service
metadata: {name: origins, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origins-1, namespace: default, labels: {kubernetes.io/service-name: origins}}
addressType: IPv4
ports: [{name: http, port: $PORT, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.2"]}, {addresses: ["127.0.0.3"]}, {addresses: ["127.0.0.4"]}]
EOF

nginx -c "$OUT/origin.conf"
RUST_LOG=warn "$VANE" --manifests "$OUT/manifests" --http-addr 127.0.0.1:18180 \
    --https-addr 127.0.0.1:18543 --admin-addr 127.0.0.1:18190 --workers "$WORKERS" $VANE_FLAGS \
    >"$OUT/vane.log" 2>&1 &
VANE_PID=$!
# KILL: vane's SIGTERM keeps its listeners open for --shutdown-delay, which a script needn't wait.
trap 'kill -KILL $VANE_PID 2>/dev/null; nginx -c "$OUT/origin.conf" -s stop 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:18180/ >/dev/null && break; sleep 0.1; done
wrk -t2 -c64 -d2s http://127.0.0.1:18180/ >/dev/null

cpu() { awk '{print $14, $15}' "/proc/$VANE_PID/stat"; }
read -r USER0 SYS0 < <(cpu)
PERF_PID="" STRACE_PID=""
if [[ ${PERF:-0} == 1 ]]; then
    perf record -F 2000 -g --call-graph dwarf,16384 -o "$OUT/perf.data" -p "$VANE_PID" -- sleep 8 \
        >/dev/null 2>&1 &
    PERF_PID=$!
fi
if [[ ${STRACE:-0} == 1 ]]; then
    strace -c -f -p "$VANE_PID" -o "$OUT/strace.txt" 2>/dev/null &
    STRACE_PID=$!
fi
wrk -t2 -c64 -d10s --latency http://127.0.0.1:18180/ >"$OUT/wrk.txt"
read -r USER1 SYS1 < <(cpu)
[[ -n $STRACE_PID ]] && { kill -INT "$STRACE_PID"; wait "$STRACE_PID" || true; }
[[ -n $PERF_PID ]] && { wait "$PERF_PID" || true; }

REQUESTS=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
grep -E "Requests/sec|  99%" "$OUT/wrk.txt"
python3 - "$USER0" "$SYS0" "$USER1" "$SYS1" "$REQUESTS" <<'EOF'
import os, sys
u0, s0, u1, s1, n = map(int, sys.argv[1:])
tick = 1e6 / os.sysconf("SC_CLK_TCK")
print(f"vane CPU per request: {(u1 - u0) * tick / n:.1f} µs user + {(s1 - s0) * tick / n:.1f} µs system")
EOF
grep VmHWM "/proc/$VANE_PID/status"
[[ ${PERF:-0} == 1 ]] && echo "profile: perf report -i $OUT/perf.data --no-children"
[[ ${STRACE:-0} == 1 ]] && echo "syscalls: $OUT/strace.txt"
true
