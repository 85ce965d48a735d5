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
source "$root/scripts/test-ecomd.sh"
test_ecomd_args browser-test "usage: scripts/browser-test.sh <path to ecomd> <output dir>" "$@"
ecomd="$test_ecomd_bin"
out="$test_ecomd_out"

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
cleanup() {
  test_ecomd_stop
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
if ! test_ecomd_start browser-test "$ecomd" "$work/ecomd.json" "$work/data" "$log"; then
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
url="$test_ecomd_url"
if ! curl -fsS "$url/" 2>/dev/null | grep -qi '<!doctype html>'; then
  echo "browser-test: ecomd at $url does not serve the web UI at / (is the notification module in this build?)" >&2
  echo "browser: 0 passed, 1 failed"
  exit 1
fi

echo "browser-test: ecomd at $url; screenshots in $out"
status=0
ECOMD_URL="$url" OUT_DIR="$out" node "$root/tests/web/ui.test.mjs" || status=$?
exit "$status"
