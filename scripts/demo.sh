#!/usr/bin/env bash
# `make run`: vane in standalone mode on deploy/examples/standalone, in front of three demo
# origins on 127.0.0.1, 127.0.0.2 and 127.0.0.3. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP_ADDR=${VANE_HTTP_ADDR:-127.0.0.1:8080}
ADMIN_ADDR=${VANE_ADMIN_ADDR:-127.0.0.1:9090}
HTTPS_ADDR=${VANE_HTTPS_ADDR:-127.0.0.1:8443}

cargo build --quiet --bin vane --example demo-origins

pids=()
cleanup() {
    trap - EXIT INT TERM
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./target/debug/examples/demo-origins 5678 &
pids+=($!)
./target/debug/vane --manifests deploy/examples/standalone \
    --http-addr "$HTTP_ADDR" --https-addr "$HTTPS_ADDR" --admin-addr "$ADMIN_ADDR" &
pids+=($!)

cat <<EOF

vane is running on http://$HTTP_ADDR (and https://$HTTPS_ADDR, with a self-signed
certificate) with the manifests in deploy/examples/standalone/.
Try, in another terminal:

  curl http://$HTTP_ADDR/hello           # run it three times: origin-1, origin-2, origin-3 take turns
  curl http://$ADMIN_ADDR/debug/routes   # the routing table vane compiled, as JSON
  curl http://$ADMIN_ADDR/metrics        # Prometheus metrics
  curl http://$ADMIN_ADDR/readyz         # readiness

Edit deploy/examples/standalone/demo.yaml (remove an endpoint, say) and vane picks it up
without a restart. Press Ctrl-C to stop.

EOF
wait -n "${pids[@]}"
