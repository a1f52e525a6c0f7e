"""Many pod/container life cycles leave criproxy's fds and state/root dirs where they started."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess

from .conftest import Pod, wait_for

CYCLES = 30


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tree(*roots: Path) -> set[str]:
    """Every path under the roots (files and dirs), relative to the root's parent."""
    out: set[str] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                out.add(str(Path(dirpath, name).relative_to(root.parent)))
    return out


def _cycle(make_pod: Callable[..., Pod], i: int) -> None:
    pod = make_pod(f"leak{i}")
    cid = pod.run(command=["sh", "-c", "echo hi; sleep 60"])
    pod.exec(cid, "true")
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
    pod.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
    pod.containers.clear()


def test_cycles_leave_no_fds_or_state(make_pod: Callable[..., Pod], criproxy: CriproxyProcess) -> None:
    pid = criproxy.pid
    assert pid is not None
    _cycle(make_pod, -1)   # warm-up: lazily opened channels and caches
    fds, tree = _fds(pid), _tree(criproxy.state, criproxy.root)
    for i in range(CYCLES):
        _cycle(make_pod, i)
    wait_for(lambda: _fds(pid) <= fds, timeout=10, what=f"fd count back to {fds} (now {_fds(pid)})")
    assert _tree(criproxy.state, criproxy.root) - tree == set()
