#!/usr/bin/env bash
# Browser test of the web UI in real headless Chromium.
#
#   scripts/browser-test.sh <path to ecomd> <output dir>
#
# Installs what is missing (Debian `chromium` via apt-get; `playwright-core` via `npm ci` into
# tests/web/node_modules), starts `ecomd --role=all` on a free loopback port with a temporary data
# dir and a small inventory seed, and runs tests/web/ui.test.mjs against it (after the unit tests of
# web/assets/util.js, tests/web/util.test.mjs, under node --test). Screenshots (shop,
# order confirmed, order cancelled, operations, phone) and ecomd's log go to the output dir.
# Exits non-zero on failure; the last line is `browser: N passed, M failed`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: scripts/browser-test.sh <path to ecomd> <output dir>"
ecomd="${1:?$usage}"
out="${2:?$usage}"
[[ -x "$ecomd" ]] || { echo "browser-test: $ecomd is not an executable (build the ecomd target first)" >&2; exit 2; }
ecomd="$(cd "$(dirname "$ecomd")" && pwd)/$(basename "$ecomd")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- dependencies (idempotent, quiet) --------------------------------------------------------------
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "browser-test: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "browser-test: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ! -d "$root/tests/web/node_modules/playwright-core" ]]; then
  echo "browser-test: installing playwright-core (npm ci in tests/web)" >&2
  (cd "$root/tests/web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# --- unit tests of the UI's helpers (no browser, no server) -----------------------------------------
if ! node --test "$root/tests/web/util.test.mjs" >"$out/util-test.log" 2>&1; then
  echo "browser-test: the unit tests of web/assets/util.js failed ($out/util-test.log):" >&2
  grep -E '^not ok|error:|expected|actual' "$out/util-test.log" | head -n 20 >&2
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
echo "browser-test: $(grep -cE '^ok ' "$out/util-test.log") unit tests of web/assets/util.js passed"

# --- ecomd -----------------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ecomd-browser.XXXXXX")"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The payment deadline is long so the test can cancel an order that waits on tok_timeout.
cat >"$work/ecomd.json" <<'EOF'
{
  "inventory": {
    "admin_token": "browser-admin-token",
    "low_stock_threshold": 5,
    "seed": [
      {"sku": "MOUSE-1", "name": "Wireless Mouse", "available": 100, "unitAmount": 2499, "currency": "USD"},
      {"sku": "KB-1", "name": "Mechanical Keyboard", "available": 40, "unitAmount": 8999, "currency": "USD"},
      {"sku": "LAMP-1", "name": "Desk Lamp", "available": 30, "unitAmount": 2999, "currency": "USD"},
      {"sku": "VINYL-1", "name": "Signed Collector's Vinyl", "available": 2, "unitAmount": 15000, "currency": "USD"}
    ]
  },
  "saga": {"payment_timeout_ms": 120000}
}
EOF

log="$out/ecomd.log"
: >"$log"
"$ecomd" --role=all --config="$work/ecomd.json" --data-dir="$work/data" --http=127.0.0.1:0 \
  --log-level=info >"$log" 2>&1 &
pid=$!

# Port 0: ecomd binds a free port and logs it (no race with other processes picking ports).
url=""
for _ in $(seq 1 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "browser-test: ecomd exited during start-up; its log ($log):" >&2
    tail -n 30 "$log" >&2
    echo "browser: 0 passed, 1 failed"
    exit 1
  fi
  url="$(grep -o 'on http://[^ ]*' "$log" | head -n 1 | sed 's/^on //')" || true
  if [[ -n "$url" ]] && curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then break; fi
  url=""
  sleep 0.2
done
if [[ -z "$url" ]]; then
  echo "browser-test: ecomd did not become ready within 60 s; its log ($log):" >&2
  tail -n 30 "$log" >&2
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
url="${url/localhost/127.0.0.1}"
if ! curl -fsS "$url/" 2>/dev/null | grep -qi '<!doctype html>'; then
  echo "browser-test: ecomd at $url does not serve the web UI at / (is the notification module in this build?)" >&2
  echo "browser: 0 passed, 1 failed"
  exit 1
fi

echo "browser-test: ecomd at $url; screenshots in $out"
status=0
ECOMD_URL="$url" OUT_DIR="$out" node "$root/tests/web/ui.test.mjs" || status=$?
exit "$status"
