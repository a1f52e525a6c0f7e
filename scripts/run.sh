#!/usr/bin/env bash
# THE run command (README): on a fresh Debian 12 machine, as root, install criproxy and run it.
#
# It installs containerd, runc and the CNI plugins from Debian, installs criproxy into a venv under
# /opt/criproxy, writes a default CNI network when /etc/cni/net.d has none (a private bridge with no
# masquerading, so pods reach each other and the host, nothing else; no loopback plugin: criproxy
# brings every pod's lo up itself, as containerd does), and runs `criproxy serve` in
# the foreground. With no containerd answering on /run/containerd/containerd.sock, criproxy starts a
# private one under its own state dir (--managed-containerd=auto) and stops it on exit.
# Extra arguments go to `criproxy serve` (e.g. --log-level debug). CRIPROXY_VENV moves the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CRIPROXY_VENV:-/opt/criproxy/venv}"
PACKAGES=(containerd runc containernetworking-plugins iproute2 iptables)

if [[ "$(id -u)" != 0 ]]; then
  echo "run.sh: run as root (criproxy creates network namespaces and talks to containerd)" >&2
  exit 1
fi
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || PACKAGES+=(python3-venv)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Reinstall whenever the checkout differs from what the venv holds: a hash of pyproject.toml and
# every file of the package, so an updated checkout (same version number, newer code) never runs old
# code. One installer at a time; the dependencies stay, only criproxy itself is replaced.
source_hash="$(cd "$ROOT" && find pyproject.toml criproxy -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.criproxy-source"
if [[ ! -x "$VENV/bin/criproxy" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$source_hash" ]]; then
  mkdir -p "$(dirname "$VENV")"
  (
    flock 9
    if [[ ! -x "$VENV/bin/criproxy" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$source_hash" ]]; then
      echo "run.sh: installing criproxy from $ROOT into $VENV"
      [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q --upgrade pip
      "$VENV/bin/pip" uninstall -q -y criproxy >/dev/null 2>&1 || true
      "$VENV/bin/pip" install -q "$ROOT"
      printf '%s\n' "$source_hash" >"$stamp"
    fi
  ) 9>"$VENV.lock"
fi

if ! ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf >/dev/null 2>&1; then
  mkdir -p /etc/cni/net.d
  cat >/etc/cni/net.d/10-criproxy.conflist <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "criproxy",
  "plugins": [
    {"type": "bridge", "bridge": "criproxy0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "10.88.0.0/16"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  echo "run.sh: wrote /etc/cni/net.d/10-criproxy.conflist (bridge criproxy0, 10.88.0.0/16)"
fi

exec "$VENV/bin/criproxy" serve "$@"
