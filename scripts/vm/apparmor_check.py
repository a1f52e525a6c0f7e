"""The AppArmor checks (tests/harness/apparmor.py) through a CRI socket, run inside the guest.

Loads the test profiles with apparmor_parser, makes a pod and a privileged pod the way a kubelet with
the systemd cgroup driver does, runs every check and prints ``PASS <name>`` or ``FAIL <name>: <why>``
per line; the exit code is the number of failures. On a node without AppArmor the checks expect the
"AppArmor is not enabled" error instead (the same as the integration tests on such a host).
Usage: ``apparmor_check.py SOCKET BUSYBOX_IMAGE``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from criproxy.protos import cri
from tests.harness import apparmor as aa
from tests.harness.client import CriClient

TIMEOUT = 120.0      # per wait; the guest runs under software emulation


def containerd_ids() -> set[str]:
    out = subprocess.run(["ctr", "-n", "criproxy", "containers", "ls", "-q"], capture_output=True, text=True,
                         timeout=300).stdout
    return set(out.split())


def pod(client: CriClient, name: str, privileged: bool) -> tuple[str, cri.PodSandboxConfig]:
    uid = str(uuid.uuid4())
    parent = ("/kubepods.slice/kubepods-besteffort.slice/"
              f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice")
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=uid),
                               hostname=name, log_directory=f"/var/log/pods/default_{name}_{uid}")
    cfg.linux.cgroup_parent = parent
    cfg.linux.security_context.privileged = privileged
    sid = client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg), timeout=TIMEOUT * 5).pod_sandbox_id
    return sid, cfg


def main() -> int:
    sock, image = sys.argv[1], sys.argv[2]
    failures = 0

    def report(rows: list[aa.Result]) -> None:
        nonlocal failures
        for r in rows:
            print(f"PASS {r.name}" if r.ok else f"FAIL {r.name}: {r.why}".replace("\n", " | ")[:600], flush=True)
            failures += 0 if r.ok else 1

    enabled = aa.host_enabled()
    report([aa.Result("AppArmor is enabled on this node", enabled, "the checks expect the not-enabled error")])
    if enabled:
        try:
            aa.load_test_profiles()
        except (RuntimeError, subprocess.CalledProcessError) as e:
            report([aa.Result("test profiles load with apparmor_parser", False, str(e))])
            return failures
        report([aa.Result("test profiles load with apparmor_parser",
                          aa.loaded(aa.DENY_WRITE) and aa.loaded(aa.PERMISSIVE) and not aa.loaded(aa.NOT_LOADED))])
    client = CriClient(Path(sock), timeout=TIMEOUT * 5)
    pods = []
    try:
        sid, cfg = pod(client, "apparmor-check", privileged=False)
        pods.append(sid)
        checks = aa.Checks(client, sid, cfg, image, containerd_ids, enabled=enabled, timeout=TIMEOUT)
        for check in (checks.deny_write, checks.permissive, checks.not_loaded, checks.runtime_default,
                      checks.unconfined, checks.unset):
            try:
                report(check())
            except Exception as e:        # one broken check must not hide the others' results
                report([aa.Result(check.__name__, False, f"{type(e).__name__}: {e}")])
        psid, pcfg = pod(client, "apparmor-check-priv", privileged=True)
        pods.append(psid)
        try:
            report(aa.Checks(client, psid, pcfg, image, containerd_ids, enabled=enabled,
                             timeout=TIMEOUT).privileged())
        except Exception as e:
            report([aa.Result("privileged", False, f"{type(e).__name__}: {e}")])
    finally:
        for sid in pods:
            client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=TIMEOUT * 5)
            client.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=TIMEOUT * 5)
        if enabled:
            aa.unload_test_profiles()
    return failures


if __name__ == "__main__":
    sys.exit(main())
