#!/usr/bin/env bash
# Installs what is missing, builds everything (warnings are errors) and runs the whole test suite
# through ctest, with a real Kafka broker on loopback for the Kafka tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
build_dir="${BUILD_DIR:-build/test}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECOM_WERROR=ON >/dev/null
cmake --build "$build_dir"

# One real broker for the whole suite (fetched with Maven on first use).
export KAFKA_PORT="${KAFKA_PORT:-19092}"
if [[ -x scripts/kafka.sh ]]; then
  scripts/kafka.sh start
  trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
  export ECOM_KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
fi

ctest --test-dir "$build_dir" --output-on-failure -j2 --timeout 600

if [[ -x scripts/helm-test.sh ]]; then
  scripts/helm-test.sh
fi
