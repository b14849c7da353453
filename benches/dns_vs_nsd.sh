#!/usr/bin/env bash
# DNS query throughput per server CPU-second: Nacre (services registered through the
# Nacos v1 API) against NSD (a static zone with the same records).
#
# Usage: benches/dns_vs_nsd.sh
#   DNS_SHAPE           "1000x10" (default: 1,000 services x 10 instances) or "20x2000"
#                       (20 services x 2,000 instances: Nacre answers a weighted sample of
#                       dns.max_answers, NSD its whole RRset, truncated over UDP)
#   DNS_WORKERS         server processes/sockets: Nacre dns.udp_workers, NSD server-count
#                       (default 1); the server is pinned to cores 0..N-1
#   NACRE_BIN           Nacre binary (default target/release/nacre, relative to the repo root)
#   DNS_BENCH_DURATION  seconds of dnsperf load per server (default 10, at most 20)
#   DNS_RATE            queries per second dnsperf offers (its -Q); default: as many as
#                       it can. A fixed rate leaves dnsperf's core partly idle, so that a
#                       second worker does not compete with the load generator for CPU
#   ONLY                "nsd" or "nacre" to run one half only (default: both)
#   KEEP_TMP=1          keep the temporary directory (configs, logs, dnsperf output)
#
# Output:
#   nacre_dns_qps_per_cpu_s: N
#   nsd_dns_qps_per_cpu_s: N
#   ratio_nacre_over_nsd: R
# plus "#" diagnostic lines. The server runs on core 0, dnsperf on core 1; CPU time is
# utime+stime (from /proc/PID/stat, the whole process tree) spent during the dnsperf run.
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
HELPER="$ROOT/benches/dns_bench_helper.py"

case ${DNS_SHAPE:-1000x10} in
    1000x10) SERVICES=1000 INSTANCES=10 ;;
    20x2000) SERVICES=20 INSTANCES=2000 ;;
    *) echo "DNS_SHAPE must be 1000x10 or 20x2000" >&2; exit 2 ;;
esac
WORKERS=${DNS_WORKERS:-1}
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "DNS_WORKERS must be a positive integer" >&2; exit 2; }
# dig +short shows what fits: Nacre answers at most dns.max_answers (16).
EXPECT_A=$((INSTANCES < 16 ? INSTANCES : 16))
ONLY=${ONLY:-all}
NACRE_BIN=${NACRE_BIN:-target/release/nacre}
DURATION=${DNS_BENCH_DURATION:-10}
if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 1)); then
    echo "DNS_BENCH_DURATION must be a positive integer" >&2
    exit 2
fi
((DURATION > 20)) && DURATION=20
RATE_ARGS=()
if [[ -n ${DNS_RATE:-} ]]; then
    [[ $DNS_RATE =~ ^[1-9][0-9]*$ ]] || { echo "DNS_RATE must be a positive integer" >&2; exit 2; }
    RATE_ARGS=(-Q "$DNS_RATE")
fi
case $ONLY in
    all | nsd | nacre) ;;
    *) echo "ONLY must be nsd, nacre or unset" >&2; exit 2 ;;
esac

log() { echo "# $*"; }
die() { echo "error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v dnsperf >/dev/null 2>&1 || need_pkgs+=(dnsperf)
command -v dig >/dev/null 2>&1 || need_pkgs+=(dnsutils)
if [[ $ONLY != nacre ]] && ! command -v nsd >/dev/null 2>&1 && [[ ! -x /usr/sbin/nsd ]]; then
    need_pkgs+=(nsd)
fi
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    SUDO=
    ((EUID == 0)) || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    # The package may have started the distro's nsd on port 53 (systemd or init script);
    # we only ever use our own instance, so stop that one.
    if [[ " ${need_pkgs[*]} " == *" nsd "* ]]; then
        if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
            $SUDO systemctl stop nsd >/dev/null 2>&1 || true
        fi
        if [[ -s /run/nsd/nsd.pid ]] && kill -0 "$(cat /run/nsd/nsd.pid)" 2>/dev/null; then
            $SUDO kill "$(cat /run/nsd/nsd.pid)" 2>/dev/null || true
        fi
    fi
fi
NSD=$(command -v nsd 2>/dev/null || echo /usr/sbin/nsd)
CORES=$(nproc)
((CORES >= 2)) || log "warning: only $CORES CPU core(s); server and dnsperf share core 0"
SERVER_CPU=0
((WORKERS > 1)) && SERVER_CPU="0-$((WORKERS < CORES ? WORKERS - 1 : CORES - 1))"
CLIENT_CPU=$((CORES >= 2 ? 1 : 0))

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/dns_vs_nsd.XXXXXX)
PIDS=()
# stop_tree PID...: SIGTERM each PID, wait up to 5 s for it and its descendants (NSD
# forks xfrd and server processes) to go away, then SIGKILL what is left.
stop_tree() {
    local pid all=() p
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        # shellcheck disable=SC2207
        all+=($(python3 "$HELPER" tree "$pid" 2>/dev/null || echo "$pid"))
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for p in "${all[@]}"; do
        for _ in $(seq 50); do
            running "$p" || break
            sleep 0.1
        done
        if running "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    return 0
}

# running PID: the process exists and is not a zombie.
running() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $st != Z* ]]
}

# fg_wait CMD...: runs CMD in the background and waits for it, so that INT/TERM stop
# the script at once (bash defers traps while a foreground command runs); the cleanup
# trap then stops CMD as well.
fg_wait() {
    "$@" &
    local pid=$! rc=0
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    unset 'PIDS[-1]'
    return "$rc"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_tree "${PIDS[@]}"
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "# kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "shape ${SERVICES}x${INSTANCES}, $WORKERS worker(s), duration ${DURATION}s per server, server on core(s) $SERVER_CPU, dnsperf on core $CLIENT_CPU, CLK_TCK $(getconf CLK_TCK)"

python3 "$HELPER" queries "$WORK/queries.txt" "$SERVICES"

# dig_count PORT NAME: number of A records in the answer.
dig_count() {
    dig @127.0.0.1 -p "$1" "$2" A +short +time=1 +tries=1 2>/dev/null | grep -cE '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' || true
}

# wait_dns PORT NAME SECONDS [COUNT]: wait until NAME resolves to COUNT addresses
# (default $EXPECT_A; 0: any number).
wait_dns() {
    local deadline=$((SECONDS + $3)) want=${4:-$EXPECT_A} got
    while ((SECONDS < deadline)); do
        got=$(dig_count "$1" "$2")
        if [[ $got == "$want" ]] || { [[ $want == 0 ]] && dig @127.0.0.1 -p "$1" "$2" A +time=1 +tries=1 2>/dev/null | grep -q NOERROR; }; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# measure LABEL PID PORT: runs dnsperf against 127.0.0.1:PORT, sets RESULT to the
# queries completed per server CPU-second.
measure() {
    local label=$1 pid=$2 port=$3 out="$WORK/dnsperf-$1.txt"
    local cpu0 cpu1 completed lost qps cpu
    cpu0=$(python3 "$HELPER" cpu "$pid")
    fg_wait timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
        dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$DURATION" -c 8 -q 500 "${RATE_ARGS[@]}" \
        >"$out" 2>&1 || { cat "$out" >&2; die "dnsperf against $label failed"; }
    cpu1=$(python3 "$HELPER" cpu "$pid")
    kill -0 "$pid" 2>/dev/null || die "$label exited during the run"
    read -r completed lost qps < <(python3 "$HELPER" dnsperf-parse "$out")
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.4f", b - a }')
    log "$label: dnsperf completed $completed, lost $lost, dnsperf qps $qps, server cpu ${cpu}s"
    if awk -v c="$cpu" 'BEGIN { exit !(c <= 0) }'; then
        die "$label used no measurable CPU time"
    fi
    if [[ $completed == 0 ]]; then
        cat "$out" >&2
        die "$label completed no queries"
    fi
    RESULT=$(awk -v n="$completed" -v c="$cpu" 'BEGIN { printf "%.0f", n / c }')
}

NACRE_RESULT=
NSD_RESULT=

# ---------------------------------------------------------------- Nacre
if [[ $ONLY == all || $ONLY == nacre ]]; then
    [[ -x $NACRE_BIN ]] || die "Nacre binary not found at $NACRE_BIN (build it or set NACRE_BIN)"
    HTTP_PORT=$(python3 "$HELPER" freeport)
    DNS_PORT=$(python3 "$HELPER" freeport)
    while [[ $DNS_PORT == "$HTTP_PORT" ]]; do DNS_PORT=$(python3 "$HELPER" freeport); done
    mkdir -p "$WORK/nacre-data"
    printf '[dns]\nudp_workers = %s\n' "$WORKERS" >"$WORK/nacre.toml"
    taskset -c "$SERVER_CPU" "$NACRE_BIN" serve --config "$WORK/nacre.toml" \
        --http-addr "127.0.0.1:$HTTP_PORT" --dns-addr "127.0.0.1:$DNS_PORT" \
        --data-dir "$WORK/nacre-data" >"$WORK/nacre.log" 2>&1 &
    NACRE_PID=$!
    PIDS+=("$NACRE_PID")
    if ! fg_wait python3 "$HELPER" wait-http "http://127.0.0.1:$HTTP_PORT/nacos/v1/console/health/liveness" 30 "$NACRE_PID"; then
        tail -n 30 "$WORK/nacre.log" >&2
        die "Nacre did not become live"
    fi
    log "nacre $($NACRE_BIN --version 2>/dev/null || true) pid $NACRE_PID http :$HTTP_PORT dns :$DNS_PORT"
    NACRE_TOKEN=$(benches/nacre_token.sh "http://127.0.0.1:$HTTP_PORT" "$WORK/nacre-data")
    export NACRE_TOKEN
    if ! fg_wait timeout 90 python3 "$HELPER" register "$HTTP_PORT" "$SERVICES" "$INSTANCES" \
        >"$WORK/register.log" 2>&1; then
        cat "$WORK/register.log" >&2
        tail -n 30 "$WORK/nacre.log" >&2
        die "registration failed"
    fi
    log "nacre: $(cat "$WORK/register.log")"
    LAST=$(printf 'bench-svc-%04d' $((SERVICES - 1)))
    for name in bench-svc-0000 "$LAST"; do
        if ! wait_dns "$DNS_PORT" "$name.DEFAULT_GROUP.svc" 5; then
            dig @127.0.0.1 -p "$DNS_PORT" "$name.DEFAULT_GROUP.svc" A +time=1 +tries=1 >&2 || true
            die "Nacre does not answer $EXPECT_A A records for $name.DEFAULT_GROUP.svc"
        fi
    done
    measure nacre "$NACRE_PID" "$DNS_PORT"
    NACRE_RESULT=$RESULT
    stop_tree "$NACRE_PID"
    PIDS=()
fi

# ---------------------------------------------------------------- NSD
if [[ $ONLY == all || $ONLY == nsd ]]; then
    NSD_PORT=$(python3 "$HELPER" freeport)
    mkdir -p "$WORK/nsd"
    python3 "$HELPER" zone "$WORK/nsd/svc.zone" "$SERVICES" "$INSTANCES"
    # minimal-responses: Nacre puts only the answer RRset in a positive answer, so NSD
    # must not add the NS RRset and glue either. round-robin: Nacre reorders the
    # addresses on every query; NSD rotates them. No database, no RRL, no control port,
    # no xfrd state or cookie secrets outside the temp dir; runs as the invoking user.
    cat >"$WORK/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    port: $NSD_PORT
    do-ip6: no
    server-count: $WORKERS
    reuseport: $( ((WORKERS > 1)) && echo yes || echo no)
    username: ""
    chroot: ""
    zonesdir: "$WORK/nsd"
    database: ""
    zonefiles-write: 0
    zonelistfile: "$WORK/nsd/zone.list"
    xfrdfile: "$WORK/nsd/xfrd.state"
    xfrdir: "$WORK/nsd"
    pidfile: "$WORK/nsd/nsd.pid"
    logfile: "$WORK/nsd/nsd.log"
    cookie-secret-file: "$WORK/nsd/cookiesecrets.txt"
    verbosity: 1
    hide-version: yes
    minimal-responses: yes
    round-robin: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0

remote-control:
    control-enable: no

zone:
    name: "svc."
    zonefile: "svc.zone"
EOF
    if command -v nsd-checkconf >/dev/null 2>&1; then
        nsd-checkconf "$WORK/nsd/nsd.conf" >&2 || die "nsd-checkconf rejected $WORK/nsd/nsd.conf"
    fi
    taskset -c "$SERVER_CPU" "$NSD" -d -c "$WORK/nsd/nsd.conf" >"$WORK/nsd/stdout.log" 2>&1 &
    NSD_PID=$!
    PIDS+=("$NSD_PID")
    # NSD's whole RRset of a big service does not fit UDP (TC): any answer will do.
    NSD_WANT=$((INSTANCES <= 16 ? INSTANCES : 0))
    LAST=$(printf 'bench-svc-%04d' $((SERVICES - 1)))
    if ! wait_dns "$NSD_PORT" "bench-svc-0000.DEFAULT_GROUP.svc" 30 "$NSD_WANT" ||
        ! wait_dns "$NSD_PORT" "$LAST.DEFAULT_GROUP.svc" 5 "$NSD_WANT"; then
        cat "$WORK/nsd/stdout.log" "$WORK/nsd/nsd.log" >&2 2>/dev/null || true
        die "NSD does not answer $INSTANCES A records"
    fi
    log "$("$NSD" -v 2>&1 | head -n 1), pid $NSD_PID, $(python3 "$HELPER" tree "$NSD_PID" | wc -w) processes, dns :$NSD_PORT"
    measure nsd "$NSD_PID" "$NSD_PORT"
    NSD_RESULT=$RESULT
fi

# ---------------------------------------------------------------- report
[[ -n $NACRE_RESULT ]] && echo "nacre_dns_qps_per_cpu_s: $NACRE_RESULT"
[[ -n $NSD_RESULT ]] && echo "nsd_dns_qps_per_cpu_s: $NSD_RESULT"
if [[ -n $NACRE_RESULT && -n $NSD_RESULT ]]; then
    echo "ratio_nacre_over_nsd: $(awk -v a="$NACRE_RESULT" -v b="$NSD_RESULT" 'BEGIN { printf "%.3f", a / b }')"
fi
exit 0
