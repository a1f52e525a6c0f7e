#!/usr/bin/env bash
# The real-node lane: boot a fresh Debian 12 guest with systemd as PID 1, cgroup v2 and AppArmor,
# and run scripts/vm/guest.sh in it against this checkout (README run command + a kubelet-shaped
# pod with a systemd cgroup parent). Not part of `scripts/test.sh`: the guest runs under software
# emulation on the project's machines (minutes per run), so it is run by hand and its result is
# recorded in docs/platforms.md.
#
# CRIPROXY_VM_RUNNER names a program that boots such a guest and runs its arguments there as one
# shell command, with the directory in $SHARE mounted at /mnt/host (the interface of the VM script
# the project's machines provide). Run as root on the host, from the checkout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RUNNER="${CRIPROXY_VM_RUNNER:?set CRIPROXY_VM_RUNNER to a program that boots a Debian 12 guest and runs a command in it}"
PY="${PY:-$ROOT/.venv/bin/python}"
mkdir -p .testenv/vm
# The standard test images (busybox, a static pause), built from data on the host as the suite does.
"$PY" - <<'PYEOF'
import subprocess
from pathlib import Path
from tests.harness.images import build_standard_images
out = Path(".testenv/vm")
for name, layout in build_standard_images().items():
    subprocess.run(["tar", "-C", str(layout.path), "-cf", str(out / f"{name}.tar"), "."], check=True)
PYEOF
SHARE="$ROOT" "$RUNNER" 'bash /mnt/host/scripts/vm/guest.sh /mnt/host'
