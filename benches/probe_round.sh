#!/usr/bin/env bash
# Issue 4's probe benchmark: 10,000 persistent instances (100 services x 100, addresses
# 127.0.a.b) checked by TCP probes against 100 local listeners, with the default
# interval (5 s). Prints the wall time of each check round and the server's CPU over
# the measured rounds. Nacre is pinned to core 0, the listeners to core 1.
#
#   NACRE_BIN       default target/release/nacre (CARGO_TARGET_DIR is honoured)
#   PROBE_SERVICES  services (100); PROBE_PER_SERVICE instances each (100)
#   PROBE_MEASURE_S seconds measured once every instance is in a round (30)
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NACRE_BIN=${NACRE_BIN:-${CARGO_TARGET_DIR:-target}/release/nacre}
SERVICES=${PROBE_SERVICES:-100}
PER_SERVICE=${PROBE_PER_SERVICE:-100}
MEASURE=${PROBE_MEASURE_S:-30}
TOTAL=$((SERVICES * PER_SERVICE))
[[ -x $NACRE_BIN ]] || { echo "build Nacre first: cargo build --release" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || true

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Listeners on core 1.
taskset -c 1 python3 benches/probe_targets.py "$SERVICES" >"$TMP/ports" &
PIDS+=($!)
for _ in $(seq 1 50); do [[ -s $TMP/ports ]] && break; sleep 0.1; done
read -r -a PORTS <"$TMP/ports"

HTTP_PORT=$(free_port)
# The targets listen on loopback, which probes may not reach by default, and the
# 10,000 instances are more than one namespace may hold by default.
cat >"$TMP/nacre.toml" <<TOML
[naming]
max_persistent_instances_per_namespace = 20000
max_persistent_instances = 20000
[health]
interval_ms = 5000
jitter_ms = 500
allow_targets = ["127.0.0.0/8"]
deny_targets = []
TOML
RUST_LOG=info,nacre::health::probe=debug taskset -c 0 "$NACRE_BIN" serve --config "$TMP/nacre.toml" \
  --http-addr "127.0.0.1:$HTTP_PORT" --dns-addr 127.0.0.1:0 --data-dir "$TMP/data" \
  >"$TMP/nacre.log" 2>&1 &
NACRE_PID=$!
PIDS+=($NACRE_PID)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/nacos/v1/console/health/liveness" >/dev/null && break
  sleep 0.1
done

# Register every instance over one keep-alive connection (ephemeral=false).
TOKEN=$(benches/nacre_token.sh "http://127.0.0.1:$HTTP_PORT" "$TMP/data")
taskset -c 1 python3 - "$HTTP_PORT" "$PER_SERVICE" "$TOKEN" "${PORTS[@]}" <<'PY'
import http.client, sys, urllib.parse
port, per, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ports = sys.argv[4:]
conn = http.client.HTTPConnection("127.0.0.1", port)
for a, target in enumerate(ports):
    for b in range(per):
        q = urllib.parse.urlencode({
            "serviceName": f"bench-probe-{a:03d}", "ip": f"127.0.{a}.{b + 1}",
            "port": target, "ephemeral": "false", "accessToken": token})
        conn.request("POST", "/nacos/v1/ns/instance?" + q)
        r = conn.getresponse(); body = r.read()
        if r.status != 200:
            sys.exit(f"register failed: {r.status} {body!r}")
PY
echo "# registered $TOTAL persistent instances on ${#PORTS[@]} listener ports"

# Wait for a round that saw every instance, then measure.
rounds_with_all() { grep -c "health check round done.*targets=$TOTAL " "$TMP/nacre.log" || true; }
for _ in $(seq 1 150); do (( $(rounds_with_all) >= 1 )) && break; sleep 0.1; done
HZ=$(getconf CLK_TCK)
cpu_s() { local st; st=$(cat "/proc/$NACRE_PID/stat"); echo "${st##*) }" | awk -v hz="$HZ" '{printf "%.3f", ($12 + $13) / hz}'; }
start_rounds=$(rounds_with_all)
cpu0=$(cpu_s); t0=$(date +%s.%N)
sleep "$MEASURE"
cpu1=$(cpu_s); t1=$(date +%s.%N)
end_rounds=$(rounds_with_all)

grep "health check round done.*targets=$TOTAL " "$TMP/nacre.log" | sed -n "$((start_rounds + 1)),${end_rounds}p" |
  grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2 >"$TMP/rounds"
failed=$(grep -c "probe failed" "$TMP/nacre.log" || true)
unhealthy=$(grep -c "instance unhealthy" "$TMP/nacre.log" || true)
python3 - "$TMP/rounds" "$cpu0" "$cpu1" "$t0" "$t1" "$TOTAL" "$failed" "$unhealthy" <<'PY'
import sys
rounds = [int(x) for x in open(sys.argv[1]).read().split()]
cpu = float(sys.argv[3]) - float(sys.argv[2])
wall = float(sys.argv[5]) - float(sys.argv[4])
total, failed, unhealthy = sys.argv[6], sys.argv[7], sys.argv[8]
print(f"# {len(rounds)} rounds of {total} instances measured over {wall:.1f} s; failed probes {failed}, instances turned unhealthy {unhealthy}")
if rounds:
    print(f"probe_round_ms_mean: {sum(rounds) / len(rounds):.0f} ms")
    print(f"probe_round_ms_max: {max(rounds)} ms")
    print(f"probe_cpu_per_round: {cpu / len(rounds) * 1000:.0f} ms")
print(f"probe_server_cpu_share: {cpu / wall:.3f} of one core")
PY
