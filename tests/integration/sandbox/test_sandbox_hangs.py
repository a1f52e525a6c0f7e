"""A hung shim cannot wedge a pod: StopPodSandbox answers DEADLINE_EXCEEDED within its deadline and
the kubelet's next call succeeds once the shim answers again, without restarting criproxy."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.env import Environment
from tests.integration.sandbox.conftest import Pods, pod_config

STOP_TIMEOUT = 3.0


def _shim_of(testenv: Environment, sandbox_id: str) -> int:
    """The shim serving this pod: started with ``-id <sandbox id>`` by our containerd."""
    for pid in testenv.ctrd.shim_pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if sandbox_id.encode() in argv:
            return pid
    raise AssertionError(f"no shim for {sandbox_id} among {testenv.ctrd.shim_pids()}")


def test_frozen_shim_stop_answers_deadline_exceeded_then_succeeds(
        criproxy_factory: CriproxyFactory, testenv: Environment) -> None:
    proc = criproxy_factory(["--stop-timeout", str(STOP_TIMEOUT)], namespace="criproxy-hang")
    with proc.client() as client:
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.pause_image)))
        pods = Pods(client)
        sid = pods.run(pod_config("frozen"))
        shim = _shim_of(testenv, sid)
        criproxy_pid = proc.pid
        os.kill(shim, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid),
                                              timeout=STOP_TIMEOUT + 30)
            took = time.monotonic() - started
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.value.details()
            assert took < STOP_TIMEOUT + 10, f"answered after {took:.1f}s"
            assert pods.status(sid).status.state == cri.SANDBOX_READY   # pause is still there
        finally:
            os.kill(shim, signal.SIGCONT)
        client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        assert pods.status(sid).status.state == cri.SANDBOX_NOTREADY
        assert proc.pid == criproxy_pid and proc.alive()
        assert testenv.ctr("tasks", "ls", "-q", namespace=proc.namespace).split() == []
        pods.remove(sid)
        assert client.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items == []
