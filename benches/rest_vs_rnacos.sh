#!/usr/bin/env bash
# Nacos HTTP API throughput and memory, Nacre against r-nacos, in one session, with the
# shared harness (../shared/bench). Runs the workloads on a fresh server each (default
# the naming ones: mem_idle register beat list mem_100k) and prints both servers'
# figures and the ratios Nacre / r-nacos.
#
#   BENCH_WORKLOADS  e.g. "config_pub config_get longpoll" for the config center
#   NACRE_ARGS       extra flags for Nacre, e.g. "--db-url mysql://root@127.0.0.1:3306/nacre_bench"
#   BENCH_AUTH   "on" (default): both servers check a token on every request (Nacre's
#                default; r-nacos with RNACOS_ENABLE_OPEN_API_AUTH); "off": neither
#                (Nacre with auth.enabled = false on loopback, r-nacos's default)
#   RNACOS_BIN   r-nacos binary (default /tmp/rnacos/bin/rnacos; build it once with
#                `cargo install rnacos --version 0.8.8 --locked --root /tmp/rnacos`)
#   NACRE_BIN    default target/release/nacre
#   BENCH_DIR    the shared harness (default ../shared/bench from the repo root)
#   PAIRS        alternating pairs of runs (default 3); each pair's ratio and the
#                median of the pair ratios are printed
# Loopback only; both servers are stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
NACRE_BIN=${NACRE_BIN:-target/release/nacre}
RNACOS_BIN=${RNACOS_BIN:-/tmp/rnacos/bin/rnacos}
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-mem_idle register beat list mem_100k}"
read -r -a EXTRA <<<"${NACRE_ARGS:-}"
AUTH=${BENCH_AUTH:-on}
PAIRS=${PAIRS:-3}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "PAIRS must be a positive integer" >&2; exit 2; }
[[ $AUTH == on || $AUTH == off ]] || { echo "BENCH_AUTH must be on or off" >&2; exit 2; }
# 5,000 held long polls need as many sockets on each side.
ulimit -n 65536 2>/dev/null || true
[[ -x $NACRE_BIN ]] || { echo "build Nacre first: cargo build --release" >&2; exit 2; }
[[ -x $RNACOS_BIN ]] || { echo "no r-nacos at $RNACOS_BIN (see the header of this script)" >&2; exit 2; }
"$BENCH_DIR/setup.sh" >/dev/null

TMP=$(mktemp -d)
NACRE_PID=
cleanup() {
  [[ -n $NACRE_PID ]] && kill "$NACRE_PID" 2>/dev/null || true
  RNACOS_BIN=$RNACOS_BIN "$BENCH_DIR/peers/rnacos.sh" stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The harness holds 5,000 long polls from one address, more than
# http.max_connections_per_ip allows by default.
printf '[http]\nmax_connections_per_ip = 65536\n' >"$TMP/bench.toml"
if [[ $AUTH == off ]]; then
  printf '[auth]\nenabled = false\n' >>"$TMP/bench.toml"
fi
EXTRA+=(--config "$TMP/bench.toml")

# One run of the workloads on a fresh Nacre; figures into $1.
run_nacre() {
  local out=$1 port
  port=$(free_port)
  rm -rf "$TMP/nacre"
  "$NACRE_BIN" serve --http-addr "127.0.0.1:$port" --dns-addr 127.0.0.1:0 \
    --data-dir "$TMP/nacre" "${EXTRA[@]}" >"$TMP/nacre.log" 2>&1 &
  NACRE_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/nacos/v1/console/health/liveness" >/dev/null && break
    sleep 0.1
  done
  echo "# nacre pid $NACRE_PID on 127.0.0.1:$port (auth $AUTH)"
  local token=
  [[ $AUTH == on ]] && token=$(benches/nacre_token.sh "http://127.0.0.1:$port" "$TMP/nacre")
  NACOS_TOKEN=$token NACOS_ADDR=127.0.0.1:$port NACOS_PID=$NACRE_PID "$BENCH_DIR/run.sh" "${WORKLOADS[@]}" \
    | tee "$out" | grep -v '^#' | sed "s/^/nacre /"
  kill "$NACRE_PID"; wait "$NACRE_PID" 2>/dev/null || true; NACRE_PID=
}

# One run of the workloads on a fresh r-nacos; figures into $1.
run_rnacos() {
  local out=$1 rport=${RNACOS_BENCH_PORT:-28848} rtoken= rpid
  if [[ $AUTH == on ]]; then
    RPASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
    export RNACOS_ENABLE_OPEN_API_AUTH=true RNACOS_INIT_ADMIN_USERNAME=admin RNACOS_INIT_ADMIN_PASSWORD=$RPASS
  fi
  RNACOS_BIN=$RNACOS_BIN "$BENCH_DIR/peers/rnacos.sh" start >/dev/null
  rpid=$(cat "${RNACOS_BENCH_DIR:-/tmp/rnacos-bench}/pid")
  sleep 3
  if [[ $AUTH == on ]]; then
    rtoken=$(curl -sf -d username=admin --data-urlencode "password=$RPASS" "http://127.0.0.1:$rport/nacos/v1/auth/login" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
  fi
  echo "# r-nacos pid $rpid on 127.0.0.1:$rport (auth $AUTH)"
  NACOS_TOKEN=$rtoken NACOS_ADDR=127.0.0.1:$rport NACOS_PID=$rpid "$BENCH_DIR/run.sh" "${WORKLOADS[@]}" \
    | tee "$out" | grep -v '^#' | sed "s/^/rnacos /"
  RNACOS_BIN=$RNACOS_BIN "$BENCH_DIR/peers/rnacos.sh" stop >/dev/null
  # r-nacos can take seconds to let its ports go.
  for _ in $(seq 1 50); do
    [[ -z "$(ss -Htln "sport = :$rport")" ]] && break
    sleep 0.2
  done
}

# Alternating pairs: nacre first in odd pairs, r-nacos first in even ones, so drift of
# the machine falls on both.
for pair in $(seq "$PAIRS"); do
  echo "# pair $pair"
  if ((pair % 2)); then
    run_nacre "$TMP/nacre.$pair.txt"; run_rnacos "$TMP/rnacos.$pair.txt"
  else
    run_rnacos "$TMP/rnacos.$pair.txt"; run_nacre "$TMP/nacre.$pair.txt"
  fi
done

python3 - "$TMP" "$PAIRS" <<'PY'
import statistics, sys
tmp, pairs = sys.argv[1], int(sys.argv[2])
def figures(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and not line.startswith("#"):
            try:
                out[parts[0][:-1]] = float(parts[1])
            except ValueError:
                pass
    return out
runs = [(figures(f"{tmp}/nacre.{p}.txt"), figures(f"{tmp}/rnacos.{p}.txt")) for p in range(1, pairs + 1)]
for k in ["register", "beat", "list", "register_100k", "mem_after_100k", "config_publish",
          "config_get", "longpoll_notify_p99", "longpoll_rss_held"]:
    ratios = [n[k] / r[k] for n, r in runs if k in n and k in r and r[k]]
    if ratios:
        print(f"ratio_{k}_nacre_over_rnacos: median {statistics.median(ratios):.2f} (pairs: "
              + " ".join(f"{x:.2f}" for x in ratios) + ")")
PY
