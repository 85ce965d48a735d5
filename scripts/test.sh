#!/usr/bin/env bash
# Installs what is missing, builds everything (warnings are errors) and runs every test:
#   0. the code format (.clang-format);
#   1. the C++ suite through ctest, with a real Apache Kafka broker on loopback for the Kafka tests
#      and a real PostgreSQL 15 server on loopback for the PostgreSQL store tests;
#   2. the browser test of the web UI in headless Chromium;
#   3. the property-based API test: schemathesis against docs/openapi.yaml, every check;
#   4. a 5-second smoke run of every benchmark scenario;
#   5. the Helm chart tests and the container recipe (the Dockerfile's build steps, without docker).
# Every stage runs even if an earlier one failed; the exit code is non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
build_dir="${BUILD_DIR:-build/test}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECOM_WERROR=ON >/dev/null
cmake --build "$build_dir"

# One real broker for the whole suite (fetched with Maven on first use), stopped on exit.
export KAFKA_PORT="${KAFKA_PORT:-19092}"
own_kafka_dir=""
if [[ -z "${KAFKA_DATA_DIR:-}" ]]; then
  own_kafka_dir="$(mktemp -d /tmp/ecomd-kafka-test.XXXXXX)"
  export KAFKA_DATA_DIR="$own_kafka_dir"
fi
# One real PostgreSQL server likewise (Debian's postgresql-15, installed by the script).
export PG_PORT="${PG_PORT:-15432}"
own_pg_dir=""
if [[ -z "${PG_DATA_DIR:-}" ]]; then
  own_pg_dir="$(mktemp -d /tmp/ecomd-pg-test.XXXXXX)"
  export PG_DATA_DIR="$own_pg_dir"
fi
cleanup() {
  scripts/kafka.sh stop >/dev/null 2>&1 || true
  [[ -z "$own_kafka_dir" ]] || rm -rf "$own_kafka_dir"
  scripts/postgres.sh stop >/dev/null 2>&1 || true
  [[ -z "$own_pg_dir" ]] || rm -rf "$own_pg_dir"
}
trap cleanup EXIT
scripts/kafka.sh start
export ECOM_KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
scripts/postgres.sh start
ECOM_PG_URL="$(scripts/postgres.sh url)"
export ECOM_PG_URL

failed=()
stage() {
  local name="$1"
  shift
  echo
  echo "=== ${name}"
  if "$@"; then
    echo "=== ${name}: ok"
  else
    echo "=== ${name}: FAILED"
    failed+=("$name")
  fi
}

stage "code format" scripts/format-check.sh
stage "unit, contract and end-to-end tests (ctest)" \
  ctest --test-dir "$build_dir" --output-on-failure -j2 --timeout 900
stage "browser test" scripts/browser-test.sh "$build_dir/src/ecomd" "$build_dir/browser"
stage "API test (schemathesis)" scripts/schemathesis.sh "$build_dir/src/ecomd" "$build_dir/schemathesis"
for scenario in embedded kafka-1proc kafka-split http-accept micro; do
  stage "benchmark smoke: ${scenario}" env BUILD_DIR="$build_dir" bench/run.sh --smoke "$scenario"
done
stage "helm chart and container recipe" scripts/helm-test.sh --docker-recipe

echo
if ((${#failed[@]})); then
  echo "test.sh: FAILED stages: ${failed[*]}"
  exit 1
fi
echo "test.sh: every stage passed"
