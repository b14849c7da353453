#!/usr/bin/env bash
# The DNS benchmark as issue #11 specifies it: benches/dns_vs_nsd.sh for every shape and
# worker count, as alternating pairs (NSD then Nacre, then Nacre then NSD, ...), so that
# drift of the machine during the session falls on both servers alike; each figure is
# the median over the pairs.
#
# Usage: benches/dns_matrix.sh
#   PAIRS               pairs per shape and worker count (default 5)
#   SHAPES              default "1000x10 20x2000"
#   WORKER_COUNTS       default "1 2"
#   NACRE_BIN, DNS_BENCH_DURATION  passed on to dns_vs_nsd.sh
#   MODE                "servers" (default): pairs of Nacre and NSD at each worker
#                       count, as above; "scaling": pairs of one server at the fewest and
#                       the most workers, alternating (fewest then most, then most then
#                       fewest, ...), per shape and server, so that drift of the machine
#                       does not pass for a change with the worker count
#
# Output, per shape and worker count:
#   <shape> w<N>: nacre <median q/CPU-s>  nsd <median>  ratio <median of pair ratios>
# then Nacre's 20x2000 figure over its 1000x10 one per worker count, and each server's
# figure with the most workers over its figure with the fewest, per shape.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PAIRS=${PAIRS:-5}
SHAPES=${SHAPES:-1000x10 20x2000}
WORKER_COUNTS=${WORKER_COUNTS:-1 2}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "PAIRS must be a positive integer" >&2; exit 2; }

RESULTS=$(mktemp /tmp/dns_matrix.XXXXXX)
trap 'rm -f "$RESULTS"' EXIT

# run SHAPE WORKERS SERVER: one half of a pair; appends "SHAPE WORKERS SERVER N".
run() {
    local out value
    out=$(DNS_SHAPE=$1 DNS_WORKERS=$2 ONLY=$3 benches/dns_vs_nsd.sh 2>&1) || {
        echo "$out" >&2
        echo "error: dns_vs_nsd.sh failed for $1 with $2 worker(s), $3" >&2
        exit 1
    }
    value=$(awk -v s="$3" '$1 == s "_dns_qps_per_cpu_s:" { print $2 }' <<<"$out")
    [[ -n $value ]] || { echo "$out" >&2; echo "error: no figure for $3" >&2; exit 1; }
    echo "# $1 w$2 $3: $value"
    echo "$1 $2 $3 $value" >>"$RESULTS"
}

if [[ ${MODE:-servers} == scaling ]]; then
    low=$(tr ' ' '\n' <<<"$WORKER_COUNTS" | sort -n | head -n 1)
    high=$(tr ' ' '\n' <<<"$WORKER_COUNTS" | sort -n | tail -n 1)
    for shape in $SHAPES; do
        for server in nacre nsd; do
            for pair in $(seq "$PAIRS"); do
                if ((pair % 2)); then
                    run "$shape" "$low" "$server"
                    run "$shape" "$high" "$server"
                else
                    run "$shape" "$high" "$server"
                    run "$shape" "$low" "$server"
                fi
            done
        done
    done
    python3 - "$RESULTS" "$low" "$high" <<'EOF'
import statistics
import sys

low, high = int(sys.argv[2]), int(sys.argv[3])
figures = {}
for shape, w, server, value in (line.split() for line in open(sys.argv[1])):
    figures.setdefault((shape, server, int(w)), []).append(float(value))
for (shape, server, w), values in sorted(figures.items()):
    if w != low:
        continue
    ratios = [b / a for a, b in zip(values, figures[(shape, server, high)])]
    print(
        f"{server} {shape} w{high} over w{low}: {statistics.median(ratios):.3f}"
        f"  (pair ratios {' '.join(f'{r:.3f}' for r in ratios)})"
    )
EOF
    exit 0
fi
[[ ${MODE:-servers} == servers ]] || { echo "MODE must be servers or scaling" >&2; exit 2; }

for shape in $SHAPES; do
    for workers in $WORKER_COUNTS; do
        for pair in $(seq "$PAIRS"); do
            if ((pair % 2)); then
                run "$shape" "$workers" nsd
                run "$shape" "$workers" nacre
            else
                run "$shape" "$workers" nacre
                run "$shape" "$workers" nsd
            fi
        done
    done
done

python3 - "$RESULTS" "$SHAPES" "$WORKER_COUNTS" <<'EOF'
import statistics
import sys

rows = [line.split() for line in open(sys.argv[1])]
shapes = sys.argv[2].split()
workers = [int(w) for w in sys.argv[3].split()]
figures = {}
for shape, w, server, value in rows:
    figures.setdefault((shape, int(w), server), []).append(float(value))

median = {}
for shape in shapes:
    for w in workers:
        nacre = figures[(shape, w, "nacre")]
        nsd = figures[(shape, w, "nsd")]
        ratios = [a / b for a, b in zip(nacre, nsd)]
        median[(shape, w, "nacre")] = statistics.median(nacre)
        median[(shape, w, "nsd")] = statistics.median(nsd)
        print(
            f"{shape} w{w}: nacre {statistics.median(nacre):.0f}  nsd {statistics.median(nsd):.0f}"
            f"  ratio {statistics.median(ratios):.3f}  (pair ratios {' '.join(f'{r:.3f}' for r in ratios)})"
        )
if len(shapes) >= 2:
    small, big = shapes[0], shapes[-1]
    for w in workers:
        own = median[(big, w, "nacre")] / median[(small, w, "nacre")]
        print(f"nacre {big} over {small}, w{w}: {own:.3f}")
if len(workers) >= 2:
    low, high = min(workers), max(workers)
    for shape in shapes:
        for server in ("nacre", "nsd"):
            scale = median[(shape, high, server)] / median[(shape, low, server)]
            print(f"{server} {shape} w{high} over w{low}: {scale:.3f}")
EOF
