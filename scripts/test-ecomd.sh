#!/usr/bin/env bash
# Sourced by the test scripts that need a running ecomd (scripts/browser-test.sh,
# scripts/schemathesis.sh), so they start and stop it the same way:
#
#   source scripts/test-ecomd.sh
#   test_ecomd_args NAME USAGE "$@"                   # <ecomd> <output dir>: sets test_ecomd_bin
#                                                     # and test_ecomd_out (absolute, dir made)
#   test_ecomd_start NAME ECOMD CONFIG DATA_DIR LOG   # sets test_ecomd_url and test_ecomd_pid
#   test_ecomd_stop                                   # SIGTERM, then SIGKILL after 10 s
#
# ecomd runs `--role=all` on the embedded bus with `--http=127.0.0.1:0`: it binds a free port and
# logs it, so there is no race with other processes picking ports. test_ecomd_start returns
# non-zero (after printing the log's tail) when ecomd exits or is not ready within 60 s.

test_ecomd_pid=""
test_ecomd_url=""
test_ecomd_bin=""
test_ecomd_out=""

test_ecomd_args() {
  local name="$1" usage="$2"
  shift 2
  if (($# != 2)); then
    echo "$usage" >&2
    exit 2
  fi
  [[ -x "$1" ]] || { echo "${name}: $1 is not an executable (build the ecomd target first)" >&2; exit 2; }
  test_ecomd_bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  mkdir -p "$2"
  test_ecomd_out="$(cd "$2" && pwd)"
}

test_ecomd_start() {
  local name="$1" ecomd="$2" config="$3" data_dir="$4" log="$5"
  : >"$log"
  "$ecomd" --role=all --config="$config" --data-dir="$data_dir" --http=127.0.0.1:0 \
    --log-level=info >"$log" 2>&1 &
  test_ecomd_pid=$!
  local url=""
  for _ in $(seq 1 300); do
    if ! kill -0 "$test_ecomd_pid" 2>/dev/null; then
      echo "${name}: ecomd exited during start-up; its log ($log):" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    url="$(grep -o 'on http://[^ ]*' "$log" | head -n 1 | sed 's/^on //')" || true
    if [[ -n "$url" ]] && curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then
      test_ecomd_url="${url/localhost/127.0.0.1}"
      return 0
    fi
    sleep 0.2
  done
  echo "${name}: ecomd did not become ready within 60 s; its log ($log):" >&2
  tail -n 30 "$log" >&2
  return 1
}

test_ecomd_stop() {
  local pid="$test_ecomd_pid"
  test_ecomd_pid=""
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
