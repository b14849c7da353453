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

HTTP_PORT=$(free_port)
# The harness holds 5,000 long polls from one address, more than
# http.max_connections_per_ip allows by default.
printf '[http]\nmax_connections_per_ip = 65536\n' >"$TMP/bench.toml"
if [[ $AUTH == off ]]; then
  printf '[auth]\nenabled = false\n' >>"$TMP/bench.toml"
fi
EXTRA+=(--config "$TMP/bench.toml")
"$NACRE_BIN" serve --http-addr "127.0.0.1:$HTTP_PORT" --dns-addr 127.0.0.1:0 \
  --data-dir "$TMP/nacre" "${EXTRA[@]}" >"$TMP/nacre.log" 2>&1 &
NACRE_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/nacos/v1/console/health/liveness" >/dev/null && break
  sleep 0.1
done
echo "# nacre pid $NACRE_PID on 127.0.0.1:$HTTP_PORT (auth $AUTH)"
TOKEN=
[[ $AUTH == on ]] && TOKEN=$(benches/nacre_token.sh "http://127.0.0.1:$HTTP_PORT" "$TMP/nacre")
NACOS_TOKEN=$TOKEN NACOS_ADDR=127.0.0.1:$HTTP_PORT NACOS_PID=$NACRE_PID "$BENCH_DIR/run.sh" "${WORKLOADS[@]}" \
  | tee "$TMP/nacre.txt" | grep -v '^#' | sed 's/^/nacre /'
kill "$NACRE_PID"; NACRE_PID=

RPORT=${RNACOS_BENCH_PORT:-28848}
RTOKEN=
if [[ $AUTH == on ]]; then
  RPASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  export RNACOS_ENABLE_OPEN_API_AUTH=true RNACOS_INIT_ADMIN_USERNAME=admin RNACOS_INIT_ADMIN_PASSWORD=$RPASS
fi
RNACOS_BIN=$RNACOS_BIN "$BENCH_DIR/peers/rnacos.sh" start >/dev/null
RPID=$(cat "${RNACOS_BENCH_DIR:-/tmp/rnacos-bench}/pid")
sleep 3
if [[ $AUTH == on ]]; then
  RTOKEN=$(curl -sf -d username=admin --data-urlencode "password=$RPASS" "http://127.0.0.1:$RPORT/nacos/v1/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
fi
echo "# r-nacos pid $RPID on 127.0.0.1:$RPORT (auth $AUTH)"
NACOS_TOKEN=$RTOKEN NACOS_ADDR=127.0.0.1:$RPORT NACOS_PID=$RPID "$BENCH_DIR/run.sh" "${WORKLOADS[@]}" \
  | tee "$TMP/rnacos.txt" | grep -v '^#' | sed 's/^/rnacos /'
RNACOS_BIN=$RNACOS_BIN "$BENCH_DIR/peers/rnacos.sh" stop >/dev/null

value() { awk -v k="$1:" '$1 == k {print $2}' "$2"; }
for k in register beat list register_100k mem_after_100k config_publish config_get \
  longpoll_notify_p99 longpoll_rss_held; do
  n=$(value "$k" "$TMP/nacre.txt"); r=$(value "$k" "$TMP/rnacos.txt")
  if [[ -n $n && -n $r ]]; then
    python3 -c "print('ratio_${k}_nacre_over_rnacos: %.2f' % ($n / $r))"
  fi
done
