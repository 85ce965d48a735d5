#!/usr/bin/env bash
# Installs the build and test dependencies of ecomd from Debian 12 packages. Idempotent and quiet:
# does nothing when everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git ca-certificates curl
  librdkafka-dev libboost-dev rapidjson-dev libsqlite3-dev libfmt-dev catch2
  # The notification sinks: SMTP and HTTPS through libcurl, HMAC signatures through OpenSSL.
  libcurl4-openssl-dev libssl-dev
  # GET /metrics: the registry and text serializer (core only; issue 14).
  prometheus-cpp-dev
  # The PostgreSQL store (--store=postgres): libpq, the client library only (issue 13).
  libpq-dev
)
# Extra packages for the test suite (the Kafka broker script installs Java, Maven and kcat itself).
# python3-venv: the notification channel tests run aiosmtpd, and scripts/schemathesis.sh runs
# schemathesis, from venvs (scripts/test-venv.sh);
# openssl: they make their self-signed certificates with `openssl req`.
if [[ "${1:-}" == "--test" ]]; then
  # prometheus: only for promtool, which checks what GET /metrics serves (tests/e2e).
  packages+=(python3 python3-venv openssl clang-format prometheus)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
