#!/usr/bin/env bash
# Prints an access token of the admin user of a fresh Nacre node, for the benchmarks:
#   benches/nacre_token.sh http://127.0.0.1:PORT DATA_DIR
# The node wrote the admin's generated password to DATA_DIR/auth/admin.password at its
# first start; this logs in with it (POST /nacos/v1/auth/login).
set -euo pipefail
base=$1
data=$2
for _ in $(seq 1 50); do [[ -s $data/auth/admin.password ]] && break; sleep 0.1; done
curl -sf --data-urlencode username=nacos --data-urlencode "password=$(cat "$data/auth/admin.password")" \
  "$base/nacos/v1/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])'
