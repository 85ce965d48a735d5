#!/usr/bin/env bash
# Installs what is missing, builds ecomd (Release) and runs every role in one process on the
# embedded bus. Extra arguments go to ecomd, e.g. scripts/run.sh --http=127.0.0.1:9090
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir="${BUILD_DIR:-build/release}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DECOM_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" --target ecomd

port="${ECOMD_HTTP:-0.0.0.0:8080}"
port="${port##*:}"
for arg in "$@"; do
  case "$arg" in --http=*) port="${arg##*:}" ;; esac
done
echo
echo "ecomd is starting: open http://localhost:${port}/  (Ctrl-C stops it; data in ./data)"
echo
exec "$build_dir/src/ecomd" --role=all --config=config/ecomd.json "$@"
