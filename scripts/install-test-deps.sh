#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 machine (run as root), idempotently.
#
# Why each piece: containerd/runc are the real runtime under test, the CNI plugins wire pod networks,
# docker-registry + skopeo + umoci serve test images without the internet, busybox-static and gcc
# build those images, iproute2/iptables are used by the CNI plugins and the harness cleanup, and
# apache2-utils gives htpasswd and openssl signs tokens and certificates for registry-auth tests;
# chromium renders `criproxy compare`'s HTML report headless in its test.
# containerd 1.7 and 2.1 (the test matrix, CRIPROXY_TEST_CONTAINERD) and a kubectl for the streaming
# tests come from Debian's newer suites, unpacked beside the system packages, never over them
# (scripts/fetch-debian-binaries.sh).
#
# Set CRIPROXY_FORCE_APT=1 to run apt-get even when every package is already installed.
#
# No service is started: a policy-rc.d that denies starts is in place while apt runs, so a fresh
# machine does not get a system containerd or registry. The tests start private ones anyway, so a
# system containerd that happens to run does not matter either.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PACKAGES=(containerd runc containernetworking-plugins docker-registry skopeo umoci busybox-static gcc libc6-dev
  iproute2 iptables apache2-utils openssl chromium)
# Extra Python packages the test run needs beyond pyproject's dev extra.
EXTRA_PIP=(pytest-timeout)

log() { printf '[install-test-deps] %s\n' "$*"; }

# python3 -m venv needs ensurepip; Debian's own python3 only has it with python3-venv.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  PACKAGES+=(python3-venv)
fi

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
      printf '%s\n' "$p"
    fi
  done
}

# Deny service starts during the install (Debian's invoke-rc.d honours exit 101), unless the machine
# already has its own policy-rc.d, which we then leave untouched.
with_services_denied() {
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created=1
  fi
  local rc=0
  "$@" || rc=$?
  if [[ "$created" == 1 ]]; then rm -f "$policy"; fi
  return "$rc"
}

install_system_packages() {
  mapfile -t missing < <(missing_packages)
  if [[ "${CRIPROXY_FORCE_APT:-0}" == 1 ]]; then
    missing=("${PACKAGES[@]}")
  fi
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "system packages already installed"
    return
  fi
  if [[ "$(id -u)" != 0 ]]; then
    log "missing packages (${missing[*]}) and not root: cannot install" >&2
    exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  with_services_denied apt-get install -y "${PACKAGES[@]}"
}

# The venv is rebuilt only when pyproject.toml (or the extra list) changed since the last install.
install_python_env() {
  if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  local stamp=.venv/.criproxy-deps-stamp want
  want="$( (cat pyproject.toml; printf '%s\n' "${EXTRA_PIP[@]}") | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && .venv/bin/python -c 'import criproxy' 2>/dev/null; then
    log "python deps up to date"
    return
  fi
  log "pip install -e '.[dev]' ${EXTRA_PIP[*]}"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]' "${EXTRA_PIP[@]}"
  printf '%s\n' "$want" >"$stamp"
}

install_debian_binaries() {
  if [[ "$(id -u)" != 0 ]]; then
    log "not root: containerd 1.7/2.1 and kubectl are not fetched (the integration tests need root anyway)" >&2
    return
  fi
  bash scripts/fetch-debian-binaries.sh
}

install_system_packages
install_debian_binaries
install_python_env
log "done"
