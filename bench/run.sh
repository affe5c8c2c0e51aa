#!/usr/bin/env bash
# Side-by-side benchmark of vane, HAProxy and nginx on this machine (see bench/README.md).
#
#   WORKERS=1 ROUNDS=3 DURATION=10s SHORT=5s CHURN_RATE=100 [SKIP_BUILD=1] bench/run.sh
set -euo pipefail

WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}   # scenario a and e
SHORT=${SHORT:-5s}          # scenarios b and c
CHURN_RATE=${CHURN_RATE:-100}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
REPORT="python3 $BENCH/report.py"
VANE=${VANE:-$ROOT/target/release/vane}
ORIGIN_PORT=18001
VANE_ADDR=127.0.0.1:18080
HAPROXY_ADDR=127.0.0.1:18081
NGINX_ADDR=127.0.0.1:18082
# The same two proxies with their access logs on (JSON lines to a file), run in scenario a's
# rounds: what logging adds per request, vane's beside nginx's.
VANE_LOG_ADDR=127.0.0.1:18083
NGINX_LOG_ADDR=127.0.0.1:18084
ADMIN_ADDR=127.0.0.1:18090
METRICS_ADDR=127.0.0.1:18091
DEBUG_ADDR=127.0.0.1:18092
VANE_LOG_ADMIN_ADDR=127.0.0.1:18093
VANE_LOG_METRICS_ADDR=127.0.0.1:18094
VANE_LOG_DEBUG_ADDR=127.0.0.1:18095
# And with route transforms: a regex path rewritten with a capture, a request header set and
# a response header set, in vane's annotations and nginx's directives (scenario a's rounds).
VANE_XFORM_ADDR=127.0.0.1:18085
NGINX_XFORM_ADDR=127.0.0.1:18086
VANE_XFORM_ADMIN_ADDR=127.0.0.1:18096

PIDS=()
WRK_PID=""
T=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n $WRK_PID ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            # nginx's master takes its workers down with it on TERM
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ -n $T && -d $T ]]; then
        if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $T"; else rm -rf "$T"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wrk catches SIGINT and exits normally, so bash would ignore a Ctrl-C that arrives while wrk
# runs in the foreground; run it in the background and wait, which the INT trap interrupts.
wrk_bg() {
    wrk "$@" &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --------------------------------------------------------------------------- tools
missing=()
for tool in nginx haproxy wrk; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
command -v curl >/dev/null || { log "curl is needed to probe the proxies"; exit 1; }

if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the existing $VANE"
else
    log "building vane (release)"
    (cd "$ROOT" && cargo build --release --bin vane)
fi

T=$(mktemp -d /tmp/vane-bench.XXXXXX)
chmod 755 "$T"
RAW=$T/raw
mkdir -p "$RAW" "$T/www" "$T/origin" "$T/nginx" "$T/nginx_log" "$T/nginx_xform" "$T/haproxy" \
    "$T/vane/manifests" "$T/vane_log" "$T/vane_xform/manifests"
RUN_USER=""
[[ $(id -u) -eq 0 ]] && RUN_USER="user root;"

# --------------------------------------------------------------------------- origins
head -c 100 /dev/zero | tr '\0' 'x' > "$T/www/small"
head -c $((1024 * 1024)) /dev/urandom > "$T/www/big"
SMALL_BODY=$(cat "$T/www/small")
cat > "$T/origin/nginx.conf" <<EOF
$RUN_USER
worker_processes 1;
pid $T/origin/nginx.pid;
error_log $T/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.2:$ORIGIN_PORT;
        listen 127.0.0.3:$ORIGIN_PORT;
        listen 127.0.0.4:$ORIGIN_PORT;
        location = /big { root $T/www; default_type application/octet-stream; }
        location / { default_type text/plain; return 200 "$SMALL_BODY"; }
    }
}
EOF

# --------------------------------------------------------------------------- proxies
cat > "$T/nginx/nginx.conf" <<EOF
$RUN_USER
worker_processes $WORKERS;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream origins {
        server 127.0.0.2:$ORIGIN_PORT;
        server 127.0.0.3:$ORIGIN_PORT;
        server 127.0.0.4:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen $NGINX_ADDR;
        location / {
            proxy_pass http://origins;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF

# nginx with its access log on: JSON lines with about the fields vane logs, written per
# request (no buffer=, as ingress-nginx configures it).
sed -e "s#listen $NGINX_ADDR;#listen $NGINX_LOG_ADDR;#" \
    -e "s#pid $T/nginx/nginx.pid;#pid $T/nginx_log/nginx.pid;#" \
    -e "s#error_log $T/nginx/error.log warn;#error_log $T/nginx_log/error.log warn;#" \
    -e "s#^    access_log off;#    log_format json escape=json '{\"time\":\"\$time_iso8601\",\"client\":\"\$remote_addr\",\"method\":\"\$request_method\",\"host\":\"\$host\",\"path\":\"\$request_uri\",\"protocol\":\"\$server_protocol\",\"status\":\$status,\"request_bytes\":\$request_length,\"response_bytes\":\$body_bytes_sent,\"duration\":\$request_time,\"upstream_addr\":\"\$upstream_addr\",\"upstream_status\":\"\$upstream_status\",\"upstream_response_time\":\"\$upstream_response_time\",\"request_id\":\"\$request_id\",\"user_agent\":\"\$http_user_agent\",\"referer\":\"\$http_referer\"}';\n    access_log $T/nginx_log/access.log json;#" \
    "$T/nginx/nginx.conf" > "$T/nginx_log/nginx.conf"
grep -q "access_log $T/nginx_log/access.log json;" "$T/nginx_log/nginx.conf" || { log "nginx_log config lacks its access_log"; exit 1; }

# nginx with the transforms vane_xform has: what ingress-nginx writes for rewrite-target, plus
# one request and one response header.
sed -e "s#listen $NGINX_ADDR;#listen $NGINX_XFORM_ADDR;#" \
    -e "s#pid $T/nginx/nginx.pid;#pid $T/nginx_xform/nginx.pid;#" \
    -e "s#error_log $T/nginx/error.log warn;#error_log $T/nginx_xform/error.log warn;#" \
    -e "s#^        location / {#        location ~* \"^/(.*)\" {\n            rewrite \"(?i)/(.*)\" /\$1 break;\n            proxy_set_header X-Env prod;\n            add_header X-Frame-Options DENY;#" \
    "$T/nginx/nginx.conf" > "$T/nginx_xform/nginx.conf"
grep -q "rewrite" "$T/nginx_xform/nginx.conf" || { log "nginx_xform config lacks its rewrite"; exit 1; }

cat > "$T/haproxy/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind $HAPROXY_ADDR
    default_backend origins
backend origins
    balance roundrobin
    server o1 127.0.0.2:$ORIGIN_PORT
    server o2 127.0.0.3:$ORIGIN_PORT
    server o3 127.0.0.4:$ORIGIN_PORT
EOF

# The manifests; $1 varies only an annotation, so both versions compile to the same routes.
vane_manifests() {
    cat <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: vane
spec:
  controller: vane.dev/ingress-controller
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
spec:
  ingressClassName: vane
  rules:
    - http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: origins
                port:
                  name: http
---
apiVersion: v1
kind: Service
metadata:
  name: origins
  namespace: default
spec:
  ports:
    - name: http
      port: 80
      targetPort: $ORIGIN_PORT
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: origins-1
  namespace: default
  labels:
    kubernetes.io/service-name: origins
  annotations:
    bench/version: "$1"
addressType: IPv4
ports:
  - name: http
    port: $ORIGIN_PORT
    protocol: TCP
endpoints:
  - addresses: ["127.0.0.2"]
    conditions: {ready: true}
  - addresses: ["127.0.0.3"]
    conditions: {ready: true}
  - addresses: ["127.0.0.4"]
    conditions: {ready: true}
EOF
}
vane_manifests a > "$T/vane/routes.yaml.a"
# vane_xform's Ingress: the same backend, its one path a regex rewritten with a capture.
vane_manifests a | sed \
    -e 's#^  name: bench$#  name: bench\n  annotations:\n    vane.dev/rewrite-target: /$1\n    vane.dev/request-headers: "set: {X-Env: prod}"\n    vane.dev/response-headers: "set: {X-Frame-Options: DENY}"#' \
    -e 's#^          - path: /$#          - path: /(.*)#' \
    -e 's#^            pathType: Prefix$#            pathType: ImplementationSpecific#' \
    > "$T/vane_xform/manifests/routes.yaml"
# And a plain Ingress on host plain.bench in the same vane: the transforms' cost measured within
# one process (vane_xplain below), free of the noise between two.
cat >> "$T/vane_xform/manifests/routes.yaml" <<EOF
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain
  namespace: default
spec:
  ingressClassName: vane
  rules:
    - host: plain.bench
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: origins
                port:
                  name: http
EOF
grep -q "rewrite-target" "$T/vane_xform/manifests/routes.yaml" || { log "vane_xform manifests lack the rewrite"; exit 1; }
vane_manifests b > "$T/vane/routes.yaml.b"
cp "$T/vane/routes.yaml.a" "$T/vane/manifests/routes.yaml"

wait_http() { # name url
    local i
    for i in $(seq 1 100); do
        if curl -sf -o /dev/null --max-time 1 "$2"; then return 0; fi
        sleep 0.1
    done
    log "$1 did not answer on $2"
    return 1
}

log "starting origins"
nginx -p "$T/origin" -c "$T/origin/nginx.conf" -g 'daemon off;' 2>"$T/origin/stderr" &
PIDS+=($!)
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do wait_http origin "http://$ip:$ORIGIN_PORT/"; done
[[ $(curl -s "http://127.0.0.2:$ORIGIN_PORT/big" | wc -c) -eq $((1024 * 1024)) ]] || { log "origin /big is not 1 MiB"; exit 1; }

log "starting vane, haproxy, nginx with $WORKERS worker(s) each"
RUST_LOG=warn "$VANE" --manifests "$T/vane/manifests" --http-addr "$VANE_ADDR" \
    --admin-addr "$ADMIN_ADDR" --metrics-addr "$METRICS_ADDR" --debug-addr "$DEBUG_ADDR" \
    --workers "$WORKERS" --access-log off >"$T/vane/log" 2>&1 &
VANE_PID=$!
PIDS+=("$VANE_PID")
RUST_LOG=warn "$VANE" --manifests "$T/vane/manifests" --http-addr "$VANE_LOG_ADDR" \
    --https-addr 127.0.0.1:18443 --admin-addr "$VANE_LOG_ADMIN_ADDR" \
    --metrics-addr "$VANE_LOG_METRICS_ADDR" --debug-addr "$VANE_LOG_DEBUG_ADDR" --workers "$WORKERS" \
    --access-log on --access-log-format json >"$T/vane_log/access.log" 2>"$T/vane_log/log" &
VANE_LOG_PID=$!
PIDS+=("$VANE_LOG_PID")
RUST_LOG=warn "$VANE" --manifests "$T/vane_xform/manifests" --http-addr "$VANE_XFORM_ADDR" \
    --https-addr 127.0.0.1:18444 --admin-addr "$VANE_XFORM_ADMIN_ADDR" --workers "$WORKERS" \
    --access-log off >"$T/vane_xform/log" 2>&1 &
VANE_XFORM_PID=$!
PIDS+=("$VANE_XFORM_PID")
haproxy -f "$T/haproxy/haproxy.cfg" -db >"$T/haproxy/log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>"$T/nginx/stderr" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
nginx -p "$T/nginx_log" -c "$T/nginx_log/nginx.conf" -g 'daemon off;' 2>"$T/nginx_log/stderr" &
NGINX_LOG_PID=$!
PIDS+=("$NGINX_LOG_PID")
nginx -p "$T/nginx_xform" -c "$T/nginx_xform/nginx.conf" -g 'daemon off;' 2>"$T/nginx_xform/stderr" &
NGINX_XFORM_PID=$!
PIDS+=("$NGINX_XFORM_PID")

wait_http vane "http://$VANE_ADDR/"
VANE_IDLE_RSS=$($REPORT mem "$VANE_PID" VmRSS)
wait_http haproxy "http://$HAPROXY_ADDR/"
wait_http nginx "http://$NGINX_ADDR/"
wait_http vane_log "http://$VANE_LOG_ADDR/"
wait_http nginx_log "http://$NGINX_LOG_ADDR/"
wait_http vane_xform "http://$VANE_XFORM_ADDR/"
wait_http nginx_xform "http://$NGINX_XFORM_ADDR/"
for p in vane_xform nginx_xform; do
    addr=$VANE_XFORM_ADDR; [[ $p == nginx_xform ]] && addr=$NGINX_XFORM_ADDR
    curl -sf -D - -o /dev/null "http://$addr/" | grep -qi '^x-frame-options: DENY' \
        || { log "$p does not apply its transforms"; exit 1; }
done
declare -A PID_OF=([vane]=$VANE_PID [haproxy]=$HAPROXY_PID [nginx]=$NGINX_PID
    [vane_log]=$VANE_LOG_PID [nginx_log]=$NGINX_LOG_PID
    [vane_xform]=$VANE_XFORM_PID [nginx_xform]=$NGINX_XFORM_PID [vane_xplain]=$VANE_XFORM_PID)
declare -A ADDR_OF=([vane]=$VANE_ADDR [haproxy]=$HAPROXY_ADDR [nginx]=$NGINX_ADDR
    [vane_log]=$VANE_LOG_ADDR [nginx_log]=$NGINX_LOG_ADDR
    [vane_xform]=$VANE_XFORM_ADDR [nginx_xform]=$NGINX_XFORM_ADDR [vane_xplain]=$VANE_XFORM_ADDR)
# vane_xplain is vane_xform's process, asked for its plain host.
declare -A HOST_OF=([vane_xplain]=plain.bench)
PROXIES=(vane haproxy nginx)
LOGGING=(vane_log nginx_log)
TRANSFORMS=(vane_xform nginx_xform vane_xplain)

# --------------------------------------------------------------------------- metadata
META=$RAW/meta
{
    echo "date=$(date '+%Y-%m-%d %H:%M %Z')"
    echo "vane_version=$("$VANE" --version 2>&1 | head -1)"
    echo "nginx_version=$(nginx -v 2>&1 | head -1)"
    echo "haproxy_version=$(haproxy -v 2>&1 | head -1)"
    echo "wrk_version=$( (wrk -v 2>&1 || true) | head -1)"
    echo "cores=$(nproc)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "mem=$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "workers=$WORKERS"
    echo "cmd_a=wrk -t2 -c64 -d$DURATION --latency http://PROXY/"
    echo "cmd_b=wrk -t2 -c8 -d$SHORT --latency http://PROXY/big"
    echo "cmd_c=wrk -t2 -c16 -d$SHORT --latency -H 'Connection: close' http://PROXY/"
    echo "churn_rate=$CHURN_RATE"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$META"

FOREIGN=0
SAMPLES=0
check_foreign() { # compilers running now are not ours: our build is done
    SAMPLES=$((SAMPLES + 1))
    if pgrep -x 'rustc|cargo|cc1|cc1plus|ld|rust-lld' >/dev/null 2>&1; then
        FOREIGN=$((FOREIGN + 1))
    fi
    echo "$(date +%H:%M:%S) $1: load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW/loadlog"
}

# run NAME PROXY ROUND WRK-ARGS...: runs wrk, stores its output and the proxy's CPU ticks
run() {
    local scen=$1 proxy=$2 round=$3
    shift 3
    local pid=${PID_OF[$proxy]} before after
    check_foreign "$scen-$proxy-$round"
    before=$($REPORT cpu "$pid")
    wrk_bg "$@" >"$RAW/$scen-$proxy-$round.wrk" 2>&1 || log "wrk failed for $scen $proxy $round"
    after=$($REPORT cpu "$pid")
    echo $((after - before)) >"$RAW/$scen-$proxy-$round.cpu"
    printf '  %-8s round %d: %s\n' "$proxy" "$round" \
        "$(grep -E 'Requests/sec|Transfer/sec' "$RAW/$scen-$proxy-$round.wrk" | tr -s ' ' | paste -sd' ')" >&2
}

log "warm-up (2 s per proxy)"
for p in "${PROXIES[@]}" "${LOGGING[@]}" "${TRANSFORMS[@]}"; do wrk_bg -t2 -c64 -d2s "http://${ADDR_OF[$p]}/" >/dev/null 2>&1 || true; done

log "a. small GET, keep-alive, 64 connections, $DURATION x $ROUNDS rounds (and with access logs, and with transforms)"
for r in $(seq 1 "$ROUNDS"); do
    for p in "${PROXIES[@]}" "${LOGGING[@]}" "${TRANSFORMS[@]}"; do
        host=()
        [[ -n ${HOST_OF[$p]:-} ]] && host=(-H "Host: ${HOST_OF[$p]}")
        run a "$p" "$r" -t2 -c64 -d"$DURATION" --latency "${host[@]}" "http://${ADDR_OF[$p]}/"
    done
done
{
    echo "vane_log_lines=$(wc -l <"$T/vane_log/access.log")"
    echo "nginx_log_lines=$(wc -l <"$T/nginx_log/access.log")"
    echo "vane_log_dropped=$(curl -sf "http://$VANE_LOG_METRICS_ADDR/metrics" | awk '/^vane_access_log_dropped_total/ {print $2}')"
} >"$RAW/logging"
# The logs are not needed past here; scenarios b and c do not touch the logging proxies.
: >"$T/vane_log/access.log"
: >"$T/nginx_log/access.log"

log "b. 1 MiB responses, 8 connections, $SHORT x $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
    for p in "${PROXIES[@]}"; do run b "$p" "$r" -t2 -c8 -d"$SHORT" --latency "http://${ADDR_OF[$p]}/big"; done
done

log "c. new connection per request, 16 connections, $SHORT x $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
    for p in "${PROXIES[@]}"; do
        run c "$p" "$r" -t2 -c16 -d"$SHORT" --latency -H 'Connection: close' "http://${ADDR_OF[$p]}/"
    done
done

log "d. peak RSS"
{
    echo "vane_idle_rss=$VANE_IDLE_RSS"
    for p in "${PROXIES[@]}"; do echo "${p}_hwm=$($REPORT mem "${PID_OF[$p]}" VmHWM)"; done
} >"$RAW/mem"

generation() {
    curl -sf "http://$DEBUG_ADDR/debug/routes" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("generation", "?"))'
}

log "e. route churn: $CHURN_RATE rewrites/s during scenario a against vane, $ROUNDS rounds"
# Each round runs vane without churn, then with it, so that the drop compares runs minutes
# apart at most (the machine's speed drifts over a whole run more than churn costs).
GEN_BEFORE=$(generation)
: >"$RAW/churn.out"
for r in $(seq 1 "$ROUNDS"); do
    run e0 vane "$r" -t2 -c64 -d"$DURATION" --latency "http://$VANE_ADDR/"
    $REPORT churn "$T/vane/manifests/routes.yaml" "$CHURN_RATE" "$T/vane/routes.yaml.a" "$T/vane/routes.yaml.b" >>"$RAW/churn.out" &
    CHURN_PID=$!
    PIDS+=("$CHURN_PID")
    sleep 1
    run e vane "$r" -t2 -c64 -d"$DURATION" --latency "http://$VANE_ADDR/"
    kill -TERM "$CHURN_PID" 2>/dev/null || log "the churn writer had stopped early"
    wait "$CHURN_PID" || true
done
sleep 0.5
GEN_AFTER=$(generation)
read -r WRITES SECONDS_ < <(awk '{w += $1; s += $2} END {printf "%d %.2f\n", w, s}' "$RAW/churn.out") || true
{
    echo "writes=${WRITES:-?}"
    echo "seconds=${SECONDS_:-?}"
    echo "rate=$CHURN_RATE"
    if [[ $GEN_BEFORE =~ ^[0-9]+$ && $GEN_AFTER =~ ^[0-9]+$ ]]; then
        echo "swaps=$((GEN_AFTER - GEN_BEFORE))"
    else
        echo "swaps=?"
    fi
    echo "hwm=$($REPORT mem "$VANE_PID" VmHWM)"
} >"$RAW/churn"
wait_http "vane after churn" "http://$VANE_ADDR/"

echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
echo "foreign_builds=$FOREIGN of $SAMPLES samples (one per wrk run)" >>"$META"
{
    echo "per-run load averages: $(sed 's/$/;/' "$RAW/loadlog" | paste -sd' ')"
    if ((FOREIGN > 0)); then
        echo "another build (rustc/cargo/cc/ld) was running during $FOREIGN of $SAMPLES wrk runs: it competes for the 2 cores and disturbs the figures."
    fi
    if grep -qiE 'error|panic' "$T/vane/log"; then
        echo "vane logged: $(grep -iE 'error|panic' "$T/vane/log" | head -3 | paste -sd' ')"
    fi
} >"$RAW/notes"

mkdir -p "$BENCH/results"
OUT=$BENCH/results/$(date +%Y-%m-%d-%H%M).md
$REPORT report "$RAW" "$OUT"
