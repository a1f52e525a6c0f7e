#!/usr/bin/env bash
# THE test command (README, CI): install deps, then generated-code check, lint, types and the suite.
#
# Every step runs even when an earlier one failed, so one run shows all problems; the exit code is
# non-zero when any step failed, and a pytest run that collected no test (exit 5) counts as failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

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

# Per-test timeout (signal method, so fixtures still tear down); the whole run is also bounded so
# CI ends with a report rather than being killed. SIGTERM from `timeout` is turned into a clean
# teardown by the harness (tests/harness/env.py).
pytest_rc=0
echo "==> pytest"
timeout --kill-after=60 "${CRIPROXY_TEST_TOTAL_TIMEOUT:-4800}" \
  "$PY" -m pytest -q -p no:cacheprovider --timeout="${CRIPROXY_TEST_TIMEOUT:-300}" \
  --timeout-method=signal -ra tests "$@" || pytest_rc=$?
case $pytest_rc in
  0) ;;
  5) echo "==> pytest ran no tests: that is a failure"; failed+=(pytest-no-tests) ;;
  *) echo "==> pytest FAILED (exit $pytest_rc)"; failed+=(pytest) ;;
esac

if [[ ${#failed[@]} -ne 0 ]]; then
  echo "==> FAILED steps: ${failed[*]}"
  exit 1
fi
echo "==> all steps passed"
