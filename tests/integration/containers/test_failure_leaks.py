"""Failing starts and execs leave criproxy's fd count and state dir where they started."""

from __future__ import annotations

import os

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess

from .conftest import Pod, wait_for

CYCLES = 10


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _state(proc: CriproxyProcess) -> set[str]:
    return {str(p.relative_to(proc.state)) for p in proc.state.rglob("*")}


def test_failed_starts_and_execs_leak_nothing(pod: Pod, criproxy: CriproxyProcess) -> None:
    pid = criproxy.pid
    assert pid is not None
    running = pod.run(name="live", command=["sleep", "60"])
    with pytest.raises(grpc.RpcError):
        pod.exec(running, "/no/such/binary")
    fds, state = _fds(pid), _state(criproxy)
    for i in range(CYCLES):
        cid = pod.create(name=f"bad{i}", command=["/no/such/binary"])
        with pytest.raises(grpc.RpcError):
            pod.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
        with pytest.raises(grpc.RpcError):
            pod.exec(running, "/no/such/binary")
        with pytest.raises(grpc.RpcError):
            pod.rt.ExecSync(cri.ExecSyncRequest(container_id=running, cmd=["sleep", "5"], timeout=1), timeout=0.3)
    wait_for(lambda: _fds(pid) <= fds, timeout=10, what=f"fd count back to {fds} (now {_fds(pid)})")
    wait_for(lambda: not _state(criproxy) - state, timeout=10,
             what=f"state dir back as it was (extra: {_state(criproxy) - state})")
