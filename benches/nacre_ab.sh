#!/usr/bin/env bash
# Two Nacre builds on the shared Nacos harness (../shared/bench/run.sh), as alternating
# pairs (A then B, then B then A, ...), so that drift of the machine falls on both: the
# check that a refactor left the REST path where it was.
#
# Usage: benches/nacre_ab.sh A_BIN B_BIN
#   PAIRS            pairs (default 4)
#   BENCH_WORKLOADS  harness workloads (default "register beat")
#   BENCH_DIR        the harness (default ../shared/bench beside the repo)
#
# Each run starts a fresh node with auth off on 127.0.0.1 (a free port, a temporary data
# dir), runs the workloads and stops the node by its PID. Output: each run's figures,
# then per figure the median of the pair ratios B / A.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
(($# == 2)) || { echo "usage: benches/nacre_ab.sh A_BIN B_BIN" >&2; exit 2; }
A_BIN=$1 B_BIN=$2
for bin in "$A_BIN" "$B_BIN"; do [[ -x $bin ]] || { echo "not executable: $bin" >&2; exit 2; }; done
PAIRS=${PAIRS:-4}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "PAIRS must be a positive integer" >&2; exit 2; }
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-register beat}"
BENCH_DIR=${BENCH_DIR:-$(cd .. && pwd)/shared/bench}
[[ -x $BENCH_DIR/run.sh ]] || { echo "no harness at $BENCH_DIR/run.sh" >&2; exit 2; }

WORK=$(mktemp -d /tmp/nacre_ab.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# run LABEL BIN: one node, the workloads; appends "LABEL pair name value" lines.
run() {
    local label=$1 bin=$2 dir port
    dir=$(mktemp -d "$WORK/run.XXXXXX")
    printf '[http]\nmax_connections_per_ip = 65536\n[auth]\nenabled = false\n' >"$dir/nacre.toml"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$bin" serve --http-addr "127.0.0.1:$port" --dns-addr 127.0.0.1:0 --data-dir "$dir/data" \
        --config "$dir/nacre.toml" >"$dir/nacre.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/nacos/v1/console/health/liveness" >/dev/null && break
        sleep 0.1
    done
    NACOS_ADDR=127.0.0.1:$port NACOS_PID=$PID "$BENCH_DIR/run.sh" "${WORKLOADS[@]}" >"$dir/out.txt" 2>&1 || {
        cat "$dir/out.txt" >&2
        echo "error: the harness failed for $label" >&2
        exit 1
    }
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    grep -v '^#' "$dir/out.txt" | awk -v l="$label" -v p="$pair" '$1 ~ /:$/ { sub(":", "", $1); print l, p, $1, $2 }' \
        | tee -a "$WORK/results.txt"
}

for pair in $(seq "$PAIRS"); do
    if ((pair % 2)); then run A "$A_BIN"; run B "$B_BIN"; else run B "$B_BIN"; run A "$A_BIN"; fi
done

python3 - "$WORK/results.txt" <<'PY'
import statistics
import sys

figures = {}
for label, pair, name, value in (line.split() for line in open(sys.argv[1])):
    figures.setdefault(name, {}).setdefault(pair, {})[label] = float(value)
for name, pairs in figures.items():
    ratios = [p["B"] / p["A"] for p in pairs.values() if "A" in p and "B" in p and p["A"]]
    if ratios:
        print(f"{name} B/A: {statistics.median(ratios):.3f}  (pair ratios {' '.join(f'{r:.3f}' for r in ratios)})")
PY
