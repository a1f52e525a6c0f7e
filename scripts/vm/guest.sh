#!/usr/bin/env bash
# Runs INSIDE a fresh Debian 12 guest (systemd, cgroup v2, AppArmor) with the checkout at $1
# (default /mnt/host): the README's run command, then a kubelet-shaped pod checked from the node
# (pod_check.py) and the AppArmor checks (apparmor_check.py: test profiles loaded with the guest's
# apparmor_parser, Localhost/RuntimeDefault/privileged containers).
# Images come as OCI archives in <checkout>/.testenv/vm/ (made by scripts/vm/lane.sh on the host),
# imported with ctr, because the guest pulls from no registry. Prints PASS/FAIL lines; exit code =
# failures.
set -uo pipefail
SRC="${1:-/mnt/host}"
WORK=/root/criproxy-src
echo "== guest: $(cat /proc/1/comm) as PID 1, /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup)," \
     "AppArmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)," \
     "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')," \
     "$(apparmor_parser --version 2>/dev/null | head -1 || echo 'no apparmor_parser')," \
     "$(wc -l </sys/kernel/security/apparmor/profiles 2>/dev/null || echo 0) AppArmor profiles loaded"
# A copy without the host's venv and test caches (9p is slow, and the guest builds its own).
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
tar -C "$SRC" --exclude=./.venv --exclude=./.testenv --exclude=./.git -cf - . | tar -C "$WORK" -xf - || exit 1
cd "$WORK" || exit 1
for n in busybox pause; do
  ctr -n criproxy images import --base-name "localhost/$n" "$SRC/.testenv/vm/$n.tar" >/dev/null || exit 1
done
# The README's run command, in the background (it serves in the foreground).
bash scripts/run.sh --pause-image localhost/pause:3.9 >/root/criproxy.log 2>&1 &
RUN_PID=$!
for _ in $(seq 900); do
  [[ -S /run/criproxy/criproxy.sock ]] && grep -q "criproxy ready" /root/criproxy.log && break
  kill -0 "$RUN_PID" 2>/dev/null || break
  sleep 1
done
if ! grep -q "criproxy ready" /root/criproxy.log; then
  echo "FAIL run.sh: criproxy did not become ready"; tail -30 /root/criproxy.log; exit 1
fi
echo "PASS run.sh installs and serves"
PYTHONPATH="$WORK" /opt/criproxy/venv/bin/python scripts/vm/pod_check.py /run/criproxy/criproxy.sock \
  localhost/busybox:latest
rc=$?
PYTHONPATH="$WORK" /opt/criproxy/venv/bin/python scripts/vm/apparmor_check.py /run/criproxy/criproxy.sock \
  localhost/busybox:latest
rc=$((rc + $?))
kill -TERM "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null
grep -E "WARNING|ERROR" /root/criproxy.log | tail -20
exit "$rc"
