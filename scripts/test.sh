#!/usr/bin/env bash
# THE test command (README, CI): install deps, then generated-code check, lint, types and the suite,
# once per containerd release of the matrix (1.6, 1.7, 2.1), with a per-release result at the end.
#
# Every step runs even when an earlier one failed, so one run shows all problems; the exit code is
# non-zero when any step failed, and a pytest run that collected no test (exit 5) counts as failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The whole run (install, lint, every pytest run) ends within this many seconds.
deadline=$(( $(date +%s) + ${CRIPROXY_TEST_TOTAL_TIMEOUT:-1800} ))

bash scripts/install-test-deps.sh || { echo "install-test-deps.sh failed" >&2; exit 1; }

PY="$ROOT/.venv/bin/python"
export PYTHONDONTWRITEBYTECODE=1
failed=()

step() {
  local name="$1"; shift
  echo "==> $name: $*"
  local rc=0
  "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "==> $name FAILED (exit $rc)"
    failed+=("$name")
  fi
  return 0
}

if [[ -f scripts/gen_protos.py ]]; then
  step gen_protos "$PY" scripts/gen_protos.py --check
else
  echo "WARNING: scripts/gen_protos.py missing; skipping the generated-code check" >&2
fi
step ruff "$PY" -m ruff check criproxy tests
step mypy "$PY" -m mypy

# The containerd matrix: the suite runs once per containerd release (CRIPROXY_TEST_CONTAINERD, see
# tests/harness/README.md). 1.6 and 2.1 run the whole suite, 1.7 (between the two) the
# representative set below (pod lifecycle, pulls, exec, restart recovery, streaming, images): three
# whole runs took 26 of the 30 minutes on a loaded 2-core machine. CRIPROXY_TEST_FULL="1.6 2.1 1.7"
# runs the whole suite on all three. Extra arguments go to every pytest run.
#
# Per-test timeout (signal method, so fixtures still tear down); the whole script is bounded by
# CRIPROXY_TEST_TOTAL_TIMEOUT (30 minutes), each pytest run getting what is left, so CI ends with a report
# rather than being killed. SIGTERM from `timeout` is turned into a clean teardown by the harness
# (tests/harness/env.py).
# 1.6 (the system's, the default of a plain pytest run) and 2.1 (the newest) first: if the time runs
# out, 1.7, between the two, is the one left out (and reported as not run, which fails the run).
MATRIX=(${CRIPROXY_TEST_MATRIX:-1.6 2.1 1.7})
FULL=" ${CRIPROXY_TEST_FULL:-1.6 2.1} "
REPRESENTATIVE=(tests/unit tests/integration/test_env_smoke.py tests/integration/test_runtime_basics.py
  tests/integration/sandbox/test_sandbox_lifecycle.py tests/integration/sandbox/test_sandbox_recovery.py
  tests/integration/containers/test_container_lifecycle.py tests/integration/containers/test_container_exec.py
  tests/integration/containers/test_container_recovery.py tests/integration/images/test_pull.py
  tests/integration/images/test_image_rpcs.py tests/integration/streaming/test_exec.py
  tests/integration/streaming/test_kubectl.py)
cgroup_fs="$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)"
case "$cgroup_fs" in
  cgroup2fs) cgroups="v2" ;;
  tmpfs) cgroups="v1"; [[ -d /sys/fs/cgroup/unified ]] && cgroups="v1 (hybrid)" ;;
  *) cgroups="$cgroup_fs" ;;
esac
[[ -d /run/systemd/system ]] && init="systemd" || init="no systemd"
host="$( (. /etc/os-release && printf '%s' "${PRETTY_NAME:-$ID}") 2>/dev/null || uname -s), $(nproc) cores, $init"
LOGDIR="$ROOT/.testenv/matrix"
mkdir -p "$LOGDIR"
results=()

for version in "${MATRIX[@]}"; do
  left=$(( deadline - $(date +%s) ))
  if (( left < 60 )); then
    echo "==> pytest [containerd $version]: not run, the total time (CRIPROXY_TEST_TOTAL_TIMEOUT) is used up"
    failed+=("pytest-$version-not-run")
    results+=("| $version | - | $host | $cgroups | cgroupfs | - | $(date -u +%F) | not run (out of time) |")
    continue
  fi
  targets=(tests)
  scope="whole suite"
  if [[ "$FULL" != *" $version "* ]]; then
    targets=("${REPRESENTATIVE[@]}")
    scope="representative set"
  fi
  log="$LOGDIR/containerd-$version.log"
  echo "==> pytest [containerd $version, $scope] (log: .testenv/matrix/containerd-$version.log)"
  started=$(date +%s)
  pytest_rc=0
  CRIPROXY_TEST_CONTAINERD="$version" timeout --kill-after=60 "$left" \
    "$PY" -m pytest -q -p no:cacheprovider --timeout="${CRIPROXY_TEST_TIMEOUT:-300}" \
    --timeout-method=signal -ra "${targets[@]}" "$@" 2>&1 | tee "$log" || pytest_rc=$?
  took=$(( $(date +%s) - started ))
  summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -n1 | sed -E 's/^=+ //; s/ =+$//; s/ in [0-9.]+s.*$//')"
  ctrd="$(sed -n -E 's/^containerd ([^ ]+) .*/\1/p' "$log" | tail -n1)"
  case $pytest_rc in
    0) outcome="passed" ;;
    5) outcome="FAILED: no tests ran"; failed+=("pytest-$version-no-tests") ;;
    *) outcome="FAILED (exit $pytest_rc)"; failed+=("pytest-$version") ;;
  esac
  echo "==> pytest [containerd $version]: $outcome in ${took}s: ${summary:-no summary}"
  runc="$(sed -n -E 's/^containerd .*, runc ([^,]+), .*/\1/p' "$log" | tail -n1)"
  results+=("| ${ctrd:-$version} | ${runc:-?} | $host | $cgroups | cgroupfs | $scope | $(date -u +%F) | $outcome: ${summary:-?} in ${took}s |")
done

echo "==> containerd matrix (rows for docs/platforms.md)"
echo "| containerd | runc | host | cgroups | driver | tests | date | result |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${results[@]}"

if [[ ${#failed[@]} -ne 0 ]]; then
  echo "==> FAILED steps: ${failed[*]}"
  exit 1
fi
echo "==> all steps passed"
