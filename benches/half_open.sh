#!/usr/bin/env bash
# Issue 10's idle-connection benchmark: 20,000 half-open HTTP connections from
# loopback (a request head without its final blank line, as in the issue's repro),
# while a probe from 127.0.0.1 asks the liveness endpoint and DNS over TCP every
# 100 ms on new connections. Two floods, each of 20,000 connections from two client
# processes (10,000 each; the open-file limit of a process here is 20,000):
#   one_address    all from 127.0.0.2 (http.max_connections_per_ip holds them back)
#   many_addresses from 127.0.1.1-127.0.1.100 (200 each; http.max_connections and
#                  the header-read timeout hold them back)
# Prints the probe latencies second by second and in sum, the server's open file
# descriptors at most, and how many flood connections the server closed by itself.
# Nacre runs with its defaults (header timeout 10 s, per-address cap 1024, total cap
# three quarters of its open-file limit).
#
#   NACRE_BIN   default target/release/nacre (CARGO_TARGET_DIR is honoured)
#   FLOOD_S     seconds each flood holds its connections (12)
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NACRE_BIN=${NACRE_BIN:-${CARGO_TARGET_DIR:-target}/release/nacre}
HOLD=${FLOOD_S:-12}
[[ -x $NACRE_BIN ]] || { echo "build Nacre first: cargo build --release" >&2; exit 2; }

TMP=$(mktemp -d)
PIDS=()
NACRE_PID=
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n $NACRE_PID ]] && kill "$NACRE_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
DNS_PORT=$(free_port)
"$NACRE_BIN" serve --http-addr "127.0.0.1:$HTTP_PORT" --dns-addr "127.0.0.1:$DNS_PORT" \
  --data-dir "$TMP/data" >"$TMP/nacre.log" 2>&1 &
NACRE_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/nacos/v1/console/health/liveness" >/dev/null && break
  sleep 0.1
done
echo "# nacre pid $NACRE_PID http 127.0.0.1:$HTTP_PORT dns 127.0.0.1:$DNS_PORT, open-file limit $(awk '/Max open files/ {print $4}' /proc/$NACRE_PID/limits)"

run() {
  local name=$1 sources_a=$2 sources_b=$3
  echo "## $name"
  python3 benches/half_open.py probe "127.0.0.1:$HTTP_PORT" "127.0.0.1:$DNS_PORT" "$((HOLD + 2))" \
    >"$TMP/probe.txt" &
  local probe=$!
  PIDS+=("$probe")
  python3 benches/half_open.py flood "127.0.0.1:$HTTP_PORT" 10000 "$sources_a" "$HOLD" >"$TMP/flood_a.txt" &
  local a=$!
  python3 benches/half_open.py flood "127.0.0.1:$HTTP_PORT" 10000 "$sources_b" "$HOLD" >"$TMP/flood_b.txt" &
  local b=$!
  PIDS+=("$a" "$b")
  local max_fds=0
  while kill -0 "$probe" 2>/dev/null; do
    local fds
    fds=$(ls /proc/$NACRE_PID/fd | wc -l)
    ((fds > max_fds)) && max_fds=$fds
    sleep 0.2
  done
  wait "$a" "$b" "$probe" || true
  sed 's/^/  /' "$TMP/probe.txt"
  echo "  flood 1: $(tr '\n' ' ' <"$TMP/flood_a.txt")"
  echo "  flood 2: $(tr '\n' ' ' <"$TMP/flood_b.txt")"
  echo "  server_max_open_fds=$max_fds"
  grep -o 'probe_http_ms.*' "$TMP/probe.txt" | sed "s/^/$name: /"
  sleep 1
}

many() { # 127.0.1.FROM .. 127.0.1.TO as a comma list
  local out=() i
  for i in $(seq "$1" "$2"); do out+=("127.0.1.$i"); done
  (IFS=,; echo "${out[*]}")
}

run one_address 127.0.0.2 127.0.0.2
run many_addresses "$(many 1 50)" "$(many 51 100)"
