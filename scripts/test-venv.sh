#!/usr/bin/env bash
# A Python venv for the tests that run real servers or tools in Python (the SMTP server of the
# notification channel tests is aiosmtpd, from PyPI; scripts/schemathesis.sh runs schemathesis),
# made on first use and reused after:
#
#   scripts/test-venv.sh DIR [PKG==VERSION ...]   # creates DIR (a venv) if needed; prints DIR/bin/python
#
# Without packages it holds the tests' list (aiosmtpd). Pin every package: the list is the venv's
# identity, and a venv made from another list is rebuilt.
#
# The tests call it themselves with DIR under the build directory, so nothing is installed by
# hand and nothing outside the build tree changes. Concurrent callers (ctest -j) wait for the one
# that builds it (flock). Needs python3 with the venv module (Debian: python3-venv, which
# scripts/install-deps.sh --test installs) and PyPI.
set -euo pipefail

dir="${1:?usage: scripts/test-venv.sh DIR [PKG==VERSION ...]}"
shift
# Bump when the list changes: an existing venv is then rebuilt.
requirements="${*:-aiosmtpd==1.4.6}"
stamp="${dir}/.ecomd-requirements"

mkdir -p "$(dirname "${dir}")"
exec 9>"${dir}.lock"
flock 9
if [[ -x "${dir}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${requirements}" ]]; then
  echo "${dir}/bin/python"
  exit 0
fi
rm -rf "${dir}"
python3 -m venv "${dir}" >&2
# shellcheck disable=SC2086 # the list is words on purpose
"${dir}/bin/python" -m pip install --quiet --disable-pip-version-check ${requirements} >&2
echo "${requirements}" >"${stamp}"
echo "${dir}/bin/python"
