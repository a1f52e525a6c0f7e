"""A kubelet-shaped pod lifecycle through a CRI socket, checked from the node (run inside the guest).

What a kubelet with the systemd cgroup driver (kubeadm's default) sends: a pod cgroup parent like
``/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice``, a pod with a
workload container, an exec, stop and remove. Each check prints ``PASS <name>`` or ``FAIL <name>:
<why>``; the exit code is the number of failures. Usage: ``pod_check.py SOCKET BUSYBOX_IMAGE``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.harness.client import CriClient

failures = 0


def check(name: str, ok: bool, why: str = "") -> None:
    global failures
    print(f"PASS {name}" if ok else f"FAIL {name}: {why}", flush=True)
    failures += 0 if ok else 1


def task_pid(namespace: str, cid: str) -> int:
    out = subprocess.run(["ctr", "-n", namespace, "task", "ls"], capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        f = line.split()
        if f and f[0] == cid:
            return int(f[1])
    raise LookupError(f"no task {cid} in namespace {namespace}")


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text().strip()


def main() -> int:
    sock, image = sys.argv[1], sys.argv[2]
    c = CriClient(Path(sock))
    pb = c.pb
    rc = c.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    driver = pb.CgroupDriver.Name(rc.linux.cgroup_driver)
    check("RuntimeConfig reports the systemd cgroup driver", driver == "SYSTEMD", f"got {driver}")

    uid = str(uuid.uuid4())
    pod_slice = f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    parent = f"/kubepods.slice/kubepods-besteffort.slice/{pod_slice}"
    logdir = f"/var/log/pods/vm-check-{uid}"
    meta = pb.PodSandboxMetadata(name="vm-check", namespace="default", uid=uid, attempt=0)
    cfg = pb.PodSandboxConfig(metadata=meta, hostname="vm-check", log_directory=logdir,
                              linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
    try:
        sid = c.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=600).pod_sandbox_id
    except Exception as e:
        check("RunPodSandbox with a systemd pod slice", False, str(e).replace("\n", " ")[:400])
        return failures
    check("RunPodSandbox with a systemd pod slice", True)
    pause_cg = cgroup_of(task_pid("criproxy", sid))
    check("pause process is in the pod slice", pod_slice in pause_cg, pause_cg)

    ccfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="work"), image=pb.ImageSpec(image=image),
        command=["sh", "-c", "ip link show lo; ulimit -n; sleep 100000"], log_path="work/0.log",
        linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
    try:
        cid = c.runtime.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                                  sandbox_config=cfg), timeout=600).container_id
        c.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=600)
    except Exception as e:
        check("CreateContainer + StartContainer", False, str(e).replace("\n", " ")[:400])
        return failures
    check("CreateContainer + StartContainer", True)
    work_cg = cgroup_of(task_pid("criproxy", cid))
    check("workload process is in the same pod slice", pod_slice in work_cg, work_cg)
    r = c.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/sys/fs/cgroup/memory.max"],
                                              timeout=120), timeout=300)
    check("memory limit visible in the container's cgroup", r.stdout.strip() == str(64 << 20).encode(),
          repr(r.stdout))
    deadline = time.time() + 60
    log = Path(logdir, "work/0.log")
    while time.time() < deadline and not (log.exists() and "LOOPBACK" in log.read_text()):
        time.sleep(1)
    text = log.read_text() if log.exists() else ""
    check("lo is up in the pod", "LOOPBACK,UP" in text, text[:300])
    c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=600)
    c.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=600)
    left = subprocess.run(["ctr", "-n", "criproxy", "containers", "ls", "-q"], capture_output=True,
                          text=True).stdout.split()
    check("stop + remove leave no containerd container", sid not in left and cid not in left, str(left))
    return failures


if __name__ == "__main__":
    sys.exit(main())
