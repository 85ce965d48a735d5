#!/usr/bin/env bash
# Checks that every C++ file follows .clang-format (Google base, 100 columns).
#   scripts/format-check.sh          check, exit 1 on any difference
#   scripts/format-check.sh --fix    rewrite the files in place
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || {
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-format >/dev/null
}
mapfile -t files < <(git ls-files 'include/*.hpp' 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp')
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if clang-format --dry-run --Werror "${files[@]}" 2>/tmp/format-check.$$; then
  echo "format-check: ${#files[@]} files follow .clang-format"
  rm -f /tmp/format-check.$$
else
  grep -E "^[^ ].*: (error|warning)" /tmp/format-check.$$ | cut -d: -f1 | sort -u | sed 's/^/  not formatted: /'
  rm -f /tmp/format-check.$$
  echo "format-check: run scripts/format-check.sh --fix"
  exit 1
fi
