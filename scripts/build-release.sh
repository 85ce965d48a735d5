#!/usr/bin/env bash
# Release build of the ecomd binary only (no tests), as the container image builds it.
#
#   scripts/build-release.sh [BUILD_DIR]      (default: build-release under the repo root)
#
# The last line printed on stdout is the absolute path of the built binary, so callers (the
# Dockerfile, tests/helm/docker_recipe_test.sh) can do `bin=$(scripts/build-release.sh DIR | tail -n1)`.
# Environment: ECOMD_BUILD_JOBS (parallel jobs, default: number of cores), CMAKE_ARGS (extra
# configure arguments, word-split).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-${repo_root}/build-release}"
jobs="${ECOMD_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

for tool in cmake ninja; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "build-release: '${tool}' not found; run scripts/install-deps.sh first" >&2
    exit 1
  fi
done

mkdir -p "${build_dir}"
build_dir="$(cd "${build_dir}" && pwd)"

# Progress goes to stderr so that stdout ends with the binary path alone.
# shellcheck disable=SC2086  # CMAKE_ARGS is deliberately word-split
cmake -S "${repo_root}" -B "${build_dir}" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DECOM_BUILD_TESTS=OFF ${CMAKE_ARGS:-} >&2
cmake --build "${build_dir}" --target ecomd -j "${jobs}" >&2

binary="${build_dir}/src/ecomd"
if [[ ! -x "${binary}" ]]; then
  # Fall back to asking the file system, should the target ever move.
  binary="$(find "${build_dir}" -type f -name ecomd -perm -u+x -print -quit)"
fi
if [[ -z "${binary}" || ! -x "${binary}" ]]; then
  echo "build-release: build finished but no ecomd binary was found under ${build_dir}" >&2
  exit 1
fi
echo "${binary}"
