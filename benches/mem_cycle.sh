#!/usr/bin/env bash
# Issue 10's memory benchmark: 5 cycles of registering and deregistering 100,000
# ephemeral instances with a one-hour delete timeout, and the server's RSS after
# each cycle (it must stay within 20 % of the RSS after the first).
#
#   NACRE_BIN        default target/release/nacre (CARGO_TARGET_DIR is honoured)
#   CYCLES           5; CYCLE_INSTANCES 100000
# Loopback only; the server it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NACRE_BIN=${NACRE_BIN:-${CARGO_TARGET_DIR:-target}/release/nacre}
[[ -x $NACRE_BIN ]] || { echo "build Nacre first: cargo build --release" >&2; exit 2; }
TMP=$(mktemp -d)
NACRE_PID=
cleanup() {
  [[ -n $NACRE_PID ]] && kill "$NACRE_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
"$NACRE_BIN" serve --http-addr "127.0.0.1:$HTTP_PORT" --dns-addr 127.0.0.1:0 \
  --data-dir "$TMP/data" >"$TMP/nacre.log" 2>&1 &
NACRE_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/nacos/v1/console/health/liveness" >/dev/null && break
  sleep 0.1
done
TOKEN=$(benches/nacre_token.sh "http://127.0.0.1:$HTTP_PORT" "$TMP/data")
python3 benches/mem_cycle.py "127.0.0.1:$HTTP_PORT" "$NACRE_PID" "$TOKEN" \
  "${CYCLES:-5}" "${CYCLE_INSTANCES:-100000}"
