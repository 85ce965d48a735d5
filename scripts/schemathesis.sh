#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI) generates requests from docs/openapi.yaml, valid and
# invalid, sends them to a running ecomd and runs every check on the answers (no 5xx; status,
# content type, headers and body as the spec says; invalid input refused, valid input accepted;
# the admin routes refuse a request without the token).
#
#   scripts/schemathesis.sh <path to ecomd> <output dir>
#
# Installs schemathesis into a venv beside the build tree (<dir of ecomd>/../schemathesis-venv, via
# scripts/test-venv.sh; SCHEMATHESIS_VENV overrides), starts `ecomd --role=all` on the embedded bus
# on a free loopback port with a temporary data dir, a small inventory seed and an admin token, and
# runs `schemathesis run docs/openapi.yaml` with every check (`--checks all`, set in the config)
# and a fixed seed and number of examples per operation (SCHEMATHESIS_SEED, 15, and
# SCHEMATHESIS_MAX_EXAMPLES, 50, by default), so a run repeats and takes well under a minute.
# tests/schemathesis/schemathesis.toml holds what is configured per operation and why.
# The JUnit report, schemathesis' output and ecomd's log go to the output dir.
# Exits non-zero on any failure; the last line is `schemathesis: N passed, M failed`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/test-ecomd.sh"
test_ecomd_args schemathesis "usage: scripts/schemathesis.sh <path to ecomd> <output dir>" "$@"
ecomd="$test_ecomd_bin"
out="$test_ecomd_out"

# Bump deliberately: a new version brings new checks and generators, i.e. new findings.
version="4.32.5"
venv="${SCHEMATHESIS_VENV:-$(dirname "$(dirname "$ecomd")")/schemathesis-venv}"
command -v curl >/dev/null || { echo "schemathesis: curl is missing (scripts/install-deps.sh --test)" >&2; exit 2; }
python="$("$root/scripts/test-venv.sh" "$venv" "schemathesis==${version}")"
st="$(dirname "$python")/schemathesis"

# --- ecomd -----------------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ecomd-schemathesis.XXXXXX")"
cleanup() {
  test_ecomd_stop
  rm -rf "$work"
}
trap cleanup EXIT

admin_token="schemathesis-admin-token"
# A short payment deadline: every order (tok_timeout too) ends within seconds, so a long poll
# (`GET /api/orders/{id}?wait=60s`) answers well inside the request timeout.
cat >"$work/ecomd.json" <<JSON
{
  "inventory": {
    "admin_token": "${admin_token}",
    "seed": [
      {"sku": "SKU-1001", "name": "Wireless Mouse", "available": 1000, "unitAmount": 2499, "currency": "USD"},
      {"sku": "SKU-1002", "name": "Mechanical Keyboard", "available": 1000, "unitAmount": 8999, "currency": "EUR"}
    ]
  },
  "saga": {"payment_timeout_ms": 2000}
}
JSON

if ! test_ecomd_start schemathesis "$ecomd" "$work/ecomd.json" "$work/data" "$out/ecomd.log"; then
  echo "schemathesis: 0 passed, 1 failed"
  exit 1
fi
echo "schemathesis: ecomd at $test_ecomd_url; reports in $out"

# --- schemathesis ----------------------------------------------------------------------------------
# One worker: the operations share one ecomd and catalogue, and the order of requests then follows
# from the seed alone. The token goes on every request (routes without security ignore it);
# ignored_auth still sends the admin routes requests without it.
# Run from the output dir: schemathesis keeps its crash cache (for `st replay`) in ./.schemathesis.
status=0
rm -f "$out/junit.xml"
(cd "$out" && "$st" --config-file "$root/tests/schemathesis/schemathesis.toml" --no-color run \
  "$root/docs/openapi.yaml" \
  --url "$test_ecomd_url" \
  --header "Authorization: Bearer ${admin_token}" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
  --seed "${SCHEMATHESIS_SEED:-15}" --generation-database none \
  --workers 1 --request-timeout 10 --max-response-time 10 \
  --report junit --report-junit-path "$out/junit.xml" \
  >"$out/schemathesis.log" 2>&1) || status=$?
cat "$out/schemathesis.log"

# The closing line, counted from the JUnit report (one test case an operation).
summary="$("$python" - "$out/junit.xml" <<'PY' || true
import sys, xml.etree.ElementTree as ET
try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except (OSError, ET.ParseError):
    sys.exit(1)
bad = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
skipped = sum(1 for c in cases if c.find("skipped") is not None)
print(f"{len(cases) - bad - skipped} passed, {bad} failed, {skipped} skipped")
PY
)"
[[ -n "$summary" ]] || summary="0 passed, 1 failed (no report; see $out/schemathesis.log)"
if ((status != 0)) && [[ "$summary" == *" 0 failed"* ]]; then
  summary="${summary/ 0 failed/ 1 failed} (schemathesis exited ${status})"
fi
echo "schemathesis: ${summary}"
exit "$status"
