#!/usr/bin/env bash
# Tests of the Helm chart helm/ecomd, without a cluster:
#   1. helm lint --strict with every values variant (tests/helm/values/*.yaml) and per role;
#   2. helm template for a single role per release, all roles at once, and with the Ingress on;
#   3. tests/helm/check_manifests.py: renders every supported shape, parses the YAML and checks it
#      (same image everywhere, --role=<role>, probes, data volume, topic Job, Ingress routes, ...);
#   4. tests/helm/kube_strict: decodes every rendered object into the Kubernetes API types with
#      unknown fields rejected (catches misspelt or misplaced fields that helm lint lets through);
#      tests/helm/dockerfile_lint: BuildKit's parser and build checks on the Dockerfile.
#
#   scripts/helm-test.sh [--docker-recipe]
#     --docker-recipe  also run tests/helm/docker_recipe_test.sh (a full Release build: minutes)
#
# Helm has no Debian package: unless $HELM points at one, the pinned version is built with
# `go install` through the Go module proxy into $(go env GOPATH)/bin (a few minutes the first time,
# cached after). Without Go (and without a helm v3 on PATH) the tests are skipped with exit 0.
# Closes with `helm-test: N passed, M failed`; exits non-zero when anything failed.
set -uo pipefail

HELM_VERSION="${ECOMD_HELM_VERSION:-v3.16.4}"
# Kubernetes minor of the k8s.io modules Helm ${HELM_VERSION} is built with; also passed to
# lint/template so results do not depend on how helm was built.
KUBE_MINOR=31
KUBE_VERSION="1.${KUBE_MINOR}.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="${repo_root}/helm/ecomd"
values_dir="${repo_root}/tests/helm/values"
roles=(order inventory payment notification saga)

docker_recipe=0
for arg in "$@"; do
  case "${arg}" in
    --docker-recipe) docker_recipe=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "helm-test: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

passed=0
failed=0
failures=()
work="$(mktemp -d "${TMPDIR:-/tmp}/ecomd-helm-test.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

note() { echo "helm-test: $*"; }

# step NAME CMD...: runs CMD, output to a log shown only on failure.
step() {
  local name="$1"; shift
  local log="${work}/step-$((passed + failed)).log"
  if "$@" >"${log}" 2>&1; then
    passed=$((passed + 1))
    echo "PASS ${name}"
  else
    failed=$((failed + 1))
    failures+=("${name}")
    echo "FAIL ${name}"
    sed 's/^/    /' "${log}" | tail -n 40
  fi
}

version_of() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

go_bin_dir() {
  local dir
  dir="$(go env GOBIN 2>/dev/null)"
  [[ -n "${dir}" ]] || dir="$(go env GOPATH 2>/dev/null)/bin"
  echo "${dir}"
}

# Go >= 1.22 is what Helm 3.16 needs; never let go fetch another toolchain.
go_usable() {
  command -v go >/dev/null 2>&1 || return 1
  local v
  v="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null)"   # e.g. go1.26.8
  v="${v#go}"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  [[ "${major}" =~ ^[0-9]+$ && "${minor}" =~ ^[0-9]+$ ]] || return 1
  (( major > 1 || (major == 1 && minor >= 22) ))
}

install_helm() {
  local dest
  dest="$(go_bin_dir)"
  note "building helm ${HELM_VERSION} with $(go env GOVERSION) into ${dest} (no Debian package exists) ..."
  local start=${SECONDS}
  local pkg="helm.sh/helm/v3"
  # The ldflags mirror Helm's Makefile: version string and default Kubernetes version.
  if ! GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath -ldflags \
      "-s -w -X ${pkg}/internal/version.version=${HELM_VERSION} \
       -X ${pkg}/pkg/chartutil.k8sVersionMajor=1 -X ${pkg}/pkg/chartutil.k8sVersionMinor=${KUBE_MINOR} \
       -X ${pkg}/pkg/lint/rules.k8sVersionMajor=1 -X ${pkg}/pkg/lint/rules.k8sVersionMinor=${KUBE_MINOR}" \
      "${pkg}/cmd/helm@${HELM_VERSION}"; then
    return 1
  fi
  note "helm built in $((SECONDS - start))s"
  echo "${dest}/helm" >"${work}/helm-path"
}

find_helm() {
  if [[ -n "${HELM:-}" ]]; then
    echo "${HELM}"
    return 0
  fi
  local candidates=()
  go_usable && candidates+=("$(go_bin_dir)/helm")
  command -v helm >/dev/null 2>&1 && candidates+=("$(command -v helm)")
  local c
  for c in "${candidates[@]}"; do
    if [[ -x "${c}" && "$(version_of "${c}")" == "${HELM_VERSION}" ]]; then
      echo "${c}"
      return 0
    fi
  done
  if go_usable; then
    install_helm >&2 && cat "${work}/helm-path" && return 0
    return 1
  fi
  # No Go: any Helm 3 already on PATH will do.
  if command -v helm >/dev/null 2>&1 && [[ "$(version_of helm)" == v3.* ]]; then
    note "using $(command -v helm) $(version_of helm) (pinned ${HELM_VERSION} needs Go to build)" >&2
    command -v helm
    return 0
  fi
  return 2
}

helm_bin="$(find_helm)"
case $? in
  0) ;;
  2)
    echo "SKIP: helm chart tests: Go >= 1.22 is not installed (Helm has no Debian package; it is" \
      "built with 'go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}') and no helm v3 is on PATH"
    exit 0
    ;;
  *)
    echo "FAIL install helm ${HELM_VERSION} with go install (see the go output above)"
    echo "helm-test: 0 passed, 1 failed"
    exit 1
    ;;
esac
note "using ${helm_bin} ($(version_of "${helm_bin}")), Kubernetes ${KUBE_VERSION}"

# PyYAML for the manifest check: pip for the python3 on PATH, else Debian's python3-yaml.
python_bin="python3"
if ! "${python_bin}" -c 'import yaml' 2>/dev/null; then
  note "installing PyYAML for the manifest check"
  "${python_bin}" -m pip install --quiet --disable-pip-version-check pyyaml >/dev/null 2>&1 ||
    { [[ "$(id -u)" == 0 ]] && { apt-get install -y -qq python3-yaml >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-yaml >/dev/null 2>&1; }; }; } ||
    true
  if ! "${python_bin}" -c 'import yaml' 2>/dev/null && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    python_bin=/usr/bin/python3
  fi
fi

# ---------------------------------------------------------------------------- 1. lint
lint() { "${helm_bin}" lint --strict --kube-version "${KUBE_VERSION}" "${chart}" "$@"; }
step "helm lint (defaults: all roles)" lint
for f in "${values_dir}"/*.yaml; do
  step "helm lint -f tests/helm/values/$(basename "${f}")" lint -f "${f}"
done
for r in "${roles[@]}"; do
  step "helm lint --set role=${r}" lint --set "role=${r}"
done
step "helm lint --set role=order -f ingress.yaml" lint --set role=order -f "${values_dir}/ingress.yaml"

# ---------------------------------------------------------------------------- 2. template
render() {
  local out="$1"; shift
  "${helm_bin}" template "$@" "${chart}" --kube-version "${KUBE_VERSION}" --namespace shop >"${out}" &&
    grep -q '^kind: StatefulSet' "${out}"
}
mkdir -p "${work}/rendered"
for r in "${roles[@]}"; do
  step "helm template ${r}s --set role=${r}" render "${work}/rendered/${r}.yaml" "${r}s" --set "role=${r}"
done
step "helm template ecomd (all roles at once)" render "${work}/rendered/all.yaml" ecomd
step "helm template shop -f ingress.yaml (ingress on)" \
  render "${work}/rendered/ingress.yaml" shop -f "${values_dir}/ingress.yaml"
step "helm template orders --set role=order -f ingress.yaml" \
  render "${work}/rendered/order-ingress.yaml" orders --set role=order -f "${values_dir}/ingress.yaml"
for f in "${values_dir}"/*.yaml; do
  step "helm template -f tests/helm/values/$(basename "${f}")" \
    render "${work}/rendered/values-$(basename "${f}")" ecomd -f "${f}"
done
# Names at their longest must still be valid (StatefulSet <= 52 characters, Service <= 63).
step "helm template with a 53-character release name" \
  render "${work}/rendered/long-name.yaml" "release-name-of-fifty-three-characters-for-the-limits"

# ---------------------------------------------------------------------------- 3. manifest checks
if "${python_bin}" -c 'import yaml' 2>/dev/null; then
  "${python_bin}" "${repo_root}/tests/helm/check_manifests.py" --helm "${helm_bin}" \
    --chart "${chart}" --kube-version "${KUBE_VERSION}" | tee "${work}/check.log"
  summary="$(grep -E '^check_manifests: [0-9]+ passed, [0-9]+ failed' "${work}/check.log" | tail -n 1)"
  if [[ -n "${summary}" ]]; then
    n_pass="$(sed -E 's/^check_manifests: ([0-9]+) passed.*/\1/' <<<"${summary}")"
    n_fail="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"${summary}")"
    passed=$((passed + n_pass))
    failed=$((failed + n_fail))
    (( n_fail == 0 )) || failures+=("check_manifests.py (${n_fail})")
  else
    failed=$((failed + 1))
    failures+=("check_manifests.py did not finish")
  fi
else
  failed=$((failed + 1))
  failures+=("PyYAML could not be installed")
  echo "FAIL manifest check: PyYAML could not be installed (pip install pyyaml or apt-get install python3-yaml)"
fi

# ---------------------------------------------------------------------------- 4. API types, Dockerfile
if go_usable; then
  strict_check() {
    local f
    for f in "${work}"/rendered/*.yaml; do
      (cd "${repo_root}/tests/helm/kube_strict" &&
        GOFLAGS=-mod=mod GOTOOLCHAIN=local go run . "${f}") || return 1
    done
  }
  step "rendered objects decode strictly into Kubernetes ${KUBE_VERSION} API types" strict_check
  # No container engine here: BuildKit's parser and build checks stand in for `docker build --check`.
  step "Dockerfile parses and passes BuildKit's build checks (tests/helm/dockerfile_lint)" \
    bash -c "cd '${repo_root}/tests/helm/dockerfile_lint' &&
      GOFLAGS=-mod=mod GOTOOLCHAIN=local go run . '${repo_root}/Dockerfile'"
else
  note "Go missing: skipping the strict Kubernetes API type check and the Dockerfile lint"
fi

# ---------------------------------------------------------------------------- 5. docker recipe
if (( docker_recipe )); then
  step "docker recipe (tests/helm/docker_recipe_test.sh)" bash "${repo_root}/tests/helm/docker_recipe_test.sh"
fi

if (( failed > 0 )); then
  note "failed: ${failures[*]}"
fi
echo "helm-test: ${passed} passed, ${failed} failed"
(( failed == 0 ))
