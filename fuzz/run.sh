#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) and prints, per target, the
# executions per second libFuzzer reported and whether it found a crash.
#
#   fuzz/run.sh [SECONDS] [TARGET ...]
#
# cargo fuzz needs nightly features; on a stable toolchain they are enabled with
# RUSTC_BOOTSTRAP=1 (set here). Installs cargo-fuzz if missing. Builds into
# $FUZZ_TARGET_DIR (default /var/tmp/nacre-fuzz-target). Crashes land in
# fuzz/artifacts/<target>/; corpora in fuzz/corpus/<target>/ (both git-ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(dns_request listening_configs beat_json http_params)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/nacre-fuzz-target}
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see artifacts/$t and $log)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(( execs / SECONDS_EACH ))
  echo "$t: $result, $execs runs in ${SECONDS_EACH} s, $rate execs/s"
  [[ $result == ok ]] && rm -f "$log"
done
exit $status
