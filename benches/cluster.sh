#!/usr/bin/env bash
# Cluster benchmark (issue #12): three Nacre members on loopback sharing one MariaDB
# database, and optionally a 3-node r-nacos cluster started the same way.
#
#   benches/cluster.sh                      # builds the release binary, then runs
#   RNACOS_BIN=/tmp/rnacos/bin/rnacos benches/cluster.sh
#
# Prints: register on A -> DNS answer on B (p50/p99/max over N=1000), register on A ->
# listed on B (and r-nacos's, as a ratio), a restarted member's convergence with
# INSTANCES=10000, and each member's CPU while those instances beat every 5 s.
# Ports: Nacre HTTP 18848-18850, DNS 15353-15355; r-nacos 28848-28850 (+1000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/nacre-ci-target}"
if [[ -z "${NACRE_BIN:-}" ]]; then
  cargo build --release --bin nacre
  NACRE_BIN="$CARGO_TARGET_DIR/release/nacre"
fi
export NACRE_BIN
for p in 18848 18849 18850 15353 15354 15355; do
  if [[ -n "$(ss -Htlun "sport = :$p")" ]]; then echo "port $p is in use" >&2; exit 1; fi
done
DB="nacre_cluster_bench_$$"
mysql -h127.0.0.1 -uroot -e "CREATE DATABASE $DB"
trap 'mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB"' EXIT
export DB_URL="mysql://root@127.0.0.1:3306/$DB"
timeout 900 python3 benches/cluster_bench.py
