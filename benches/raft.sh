#!/usr/bin/env bash
# Raft benchmark (issue #13): persistent register throughput (single node and three
# members, beside r-nacos in alternating pairs), leader kill -> first accepted write,
# restart with 100,000 persistent instances, disk after 1,000,000 updates.
#
#   benches/raft.sh                                        # every phase
#   RNACOS_BIN=/tmp/rnacos/bin/rnacos PHASES=throughput benches/raft.sh
#
# Ports: Nacre HTTP 18848-18850, DNS 15353-15355; r-nacos 28848-28850 (+1000).
# Loopback only; see benches/raft_bench.py for the settings.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/nacre-ci-target}"
command -v wrk >/dev/null || { echo "wrk not found: run ../shared/bench/setup.sh" >&2; exit 2; }
if [[ -z "${NACRE_BIN:-}" ]]; then
  cargo build --release --bin nacre
  NACRE_BIN="$CARGO_TARGET_DIR/release/nacre"
fi
export NACRE_BIN
for p in 18848 18849 18850 15353 15354 15355 28848 28849 28850; do
  if [[ -n "$(ss -Htlun "sport = :$p")" ]]; then echo "port $p is in use" >&2; exit 1; fi
done
DB="nacre_raft_bench_$$"
mysql -h127.0.0.1 -uroot -e "CREATE DATABASE $DB"
trap 'mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB"' EXIT
export DB_URL="mysql://root@127.0.0.1:3306/$DB"
timeout 3600 python3 benches/raft_bench.py
