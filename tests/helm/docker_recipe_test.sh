#!/usr/bin/env bash
# Exercises the Dockerfile's recipe on a machine without a container engine: runs the same scripts
# as the image build (scripts/install-deps.sh, then scripts/build-release.sh into a fresh build
# dir), then checks what the runtime stage relies on:
#   - the binary answers --version (as the build stage's last command does);
#   - every shared library it links comes from a package of the runtime stage's apt-get line (or
#     their dependencies, or the slim base image), so the slim image can run it;
#   - started the way the image starts it (ENTRYPOINT/CMD, ECOMD_* environment, the image's
#     config), the Dockerfile's HEALTHCHECK command reports healthy, and SIGTERM stops it with 0.
#
#   tests/helm/docker_recipe_test.sh
# Environment: ECOMD_RECIPE_BUILD_DIR (reuse a build dir; default: a fresh temporary one),
# ECOMD_RECIPE_DOCKERFILE (default: the repository's Dockerfile),
# ECOMD_RECIPE_SKIP_DEPS=1 (do not run scripts/install-deps.sh), ECOMD_BUILD_JOBS.
# Closes with `docker_recipe: N passed, M failed`; exits non-zero when anything failed.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dockerfile="${ECOMD_RECIPE_DOCKERFILE:-${repo_root}/Dockerfile}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ecomd-recipe.XXXXXX")"
server_pid=""
cleanup() {
  if [[ -n "${server_pid}" ]] && kill -0 "${server_pid}" 2>/dev/null; then
    kill -KILL "${server_pid}" 2>/dev/null
  fi
  rm -rf "${work}"
}
trap cleanup EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
  echo "docker_recipe: ${passed} passed, ${failed} failed"
  ((failed == 0))
  exit $?
}

# --- 1. The Dockerfile still runs these scripts (so this test runs what the image runs).
if grep -qE '^RUN bash scripts/install-deps\.sh' "${dockerfile}" &&
  grep -qE 'bash scripts/build-release\.sh /src/build-release' "${dockerfile}"; then
  pass "Dockerfile builds with scripts/install-deps.sh and scripts/build-release.sh"
else
  fail "Dockerfile no longer runs scripts/install-deps.sh + scripts/build-release.sh; update this test"
fi
mapfile -t runtime_packages < <(sed -n '/# recipe: runtime-packages/,/^$/p' "${dockerfile}" |
  grep -oE 'apt-get install [^&\\]*' | head -n 1 | tr ' ' '\n' | grep -vE '^(apt-get|install|-.*|)$')
if ((${#runtime_packages[@]} > 0)); then
  pass "runtime packages of the image: ${runtime_packages[*]}"
else
  fail "cannot find the runtime stage's apt-get install line (marked '# recipe: runtime-packages')"
  finish
fi

# --- 2. The build stage: install-deps, then the Release build into a fresh directory.
if [[ "${ECOMD_RECIPE_SKIP_DEPS:-0}" == 1 ]]; then
  echo "SKIP scripts/install-deps.sh (ECOMD_RECIPE_SKIP_DEPS=1)"
elif [[ ! -f "${repo_root}/scripts/install-deps.sh" ]]; then
  fail "scripts/install-deps.sh is missing: the image's build stage would fail"
  finish
elif (cd "${repo_root}" && bash scripts/install-deps.sh) >"${work}/deps.log" 2>&1; then
  pass "scripts/install-deps.sh"
else
  fail "scripts/install-deps.sh"; tail -n 30 "${work}/deps.log"; finish
fi

build_dir="${ECOMD_RECIPE_BUILD_DIR:-${work}/build-release}"
start=${SECONDS}
if binary="$(cd "${repo_root}" && bash scripts/build-release.sh "${build_dir}" 2>"${work}/build.log" | tail -n 1)" &&
  [[ -x "${binary}" ]]; then
  pass "scripts/build-release.sh ${build_dir} -> ${binary} ($((SECONDS - start))s)"
else
  fail "scripts/build-release.sh (Release build of target ecomd)"; tail -n 40 "${work}/build.log"; finish
fi

# The build stage strips the binary and runs --version on the result.
cp "${binary}" "${work}/ecomd"
strip --strip-unneeded "${work}/ecomd" 2>/dev/null || true
binary="${work}/ecomd"
want_version="$(sed -nE 's/^project\(ecomd VERSION ([0-9.]+).*/\1/p' "${repo_root}/CMakeLists.txt")"
if out="$("${binary}" --version 2>&1)" && [[ "${out}" == *"${want_version}"* ]]; then
  pass "ecomd --version prints '${out}'"
else
  fail "ecomd --version: exit $?, printed '${out}', expected the version ${want_version}"
fi

# --- 3. Runtime libraries: each one the binary needs is provided by the runtime stage.
if ldd "${binary}" >"${work}/ldd.txt" 2>&1 && ! grep -q 'not found' "${work}/ldd.txt"; then
  closure="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${runtime_packages[@]}" 2>/dev/null | grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u)"
  # Always in debian:12-slim (essential, or needed by apt itself).
  closure="${closure}"$'\n'"libc6"$'\n'"libgcc-s1"$'\n'"libstdc++6"$'\n'"zlib1g"
  missing=()
  while read -r lib; do
    [[ -n "${lib}" ]] || continue
    pkg=""
    for candidate in "${lib}" "$(readlink -f "${lib}")" "${lib#/usr}" "/usr${lib}"; do
      pkg="$(dpkg -S "${candidate}" 2>/dev/null | head -n 1 | cut -d: -f1)" && [[ -n "${pkg}" ]] && break
    done
    if [[ -z "${pkg}" ]]; then
      missing+=("${lib} (no package owns it)")
    elif ! grep -qx "${pkg}" <<<"${closure}"; then
      missing+=("${lib} (package ${pkg})")
    fi
  done < <(awk '/=>/ {print $3} /^\t\/.*ld-linux/ {print $1}' "${work}/ldd.txt")
  if ((${#missing[@]} == 0)); then
    pass "every linked library is in the runtime stage ($(grep -c '=>' "${work}/ldd.txt") libraries)"
  else
    fail "libraries not installed by the runtime stage: ${missing[*]}"
  fi
else
  fail "ldd ${binary}"; cat "${work}/ldd.txt"
fi

# --- 4. Run it as the image does; the HEALTHCHECK command must see it healthy; SIGTERM -> 0.
read -r -a cmd_args < <(python3 - "${dockerfile}" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
print(" ".join(json.loads(re.search(r'^CMD (\[.*\])\s*$', text, re.M).group(1))))
EOF
)
healthcheck="$(python3 - "${dockerfile}" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r'^HEALTHCHECK .*?CMD (\[.*\])\s*$', text, re.M)
cmd = json.loads(m.group(1))
assert cmd[:2] == ["bash", "-c"], cmd
print(cmd[2])
EOF
)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
if [[ -z "${healthcheck}" || ${#cmd_args[@]} -eq 0 ]]; then
  fail "cannot read CMD / HEALTHCHECK from the Dockerfile"
  finish
fi
mkdir -p "${work}/data" "${work}/etc"
cp -r "${repo_root}/config/." "${work}/etc/"   # COPY --from=build /src/config/ /etc/ecomd/
(
  cd "${work}/data" &&   # WORKDIR /var/lib/ecomd
    exec env ECOMD_CONFIG="${work}/etc/ecomd.json" ECOMD_DATA_DIR="${work}/data" \
      ECOMD_HTTP="127.0.0.1:${port}" "${binary}" "${cmd_args[@]}"
) >"${work}/server.log" 2>&1 &
server_pid=$!
healthy=0
for _ in $(seq 1 120); do
  if ECOMD_HTTP="127.0.0.1:${port}" timeout 3 bash -c "${healthcheck}" 2>/dev/null; then
    healthy=1
    break
  fi
  kill -0 "${server_pid}" 2>/dev/null || break
  sleep 0.5
done
if ((healthy)); then
  pass "ecomd ${cmd_args[*]} (the image's CMD) is healthy by the Dockerfile's HEALTHCHECK"
else
  fail "the Dockerfile's HEALTHCHECK never passed against ecomd ${cmd_args[*]}"
  tail -n 20 "${work}/server.log"
fi
if kill -0 "${server_pid}" 2>/dev/null; then
  kill -TERM "${server_pid}"
  code=""
  for _ in $(seq 1 60); do
    if ! kill -0 "${server_pid}" 2>/dev/null; then
      wait "${server_pid}"; code=$?; break
    fi
    sleep 0.5
  done
  if [[ "${code}" == 0 ]]; then
    pass "SIGTERM stops it with exit code 0"
  else
    fail "SIGTERM: exit code '${code:-still running after 30s}'"
    tail -n 20 "${work}/server.log"
  fi
  server_pid=""
else
  wait "${server_pid}"
  fail "ecomd exited by itself with code $? before SIGTERM"
  server_pid=""
fi

finish
