"""Recovery after SIGKILL of criproxy, pause-exit detection, and the runtime config the kubelet sends."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.sandbox.conftest import Pods, ipam_files, netns_addresses, ping, pod_config
from tests.integration.sandbox.test_sandbox_failures import _leftovers


def _wait_state(pods: Pods, sid: str, state: int, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pods.status(sid).status.state == state:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"sandbox {sid} did not reach state {state} in {timeout}s")


def _kill_pause(pods: Pods, sid: str) -> None:
    pid = int(pods.info(sid)["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)


def test_pause_exit_makes_sandbox_notready(pods: Pods) -> None:
    sid = pods.run(pod_config("dies"))
    _kill_pause(pods, sid)
    assert _wait_state(pods, sid, cri.SANDBOX_NOTREADY) < 5.0
    pods.stop(sid)
    pods.remove(sid)


def test_recovery_after_sigkill_with_ten_pods(pods: Pods, criproxy: CriproxyProcess, testenv: Environment,
                                              ctr: object) -> None:
    ids = [pods.run(pod_config(f"r{i}")) for i in range(10)]
    before = {i.id: (i.state, i.metadata.name) for i in
              pods.client.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items if i.id in ids}
    ips = {sid: pods.status(sid).status.network.ip for sid in ids}
    netns = {sid: str(pods.info(sid)["netnsPath"]) for sid in ids}
    pods.stop(ids[0])
    before[ids[0]] = (cri.SANDBOX_NOTREADY, before[ids[0]][1])
    ips[ids[0]] = ""                                                  # torn down: no IP, as containerd
    criproxy.kill()
    os.kill(_pid_from_ctr(ctr, ids[1]), signal.SIGKILL)              # dies while criproxy is down
    before[ids[1]] = (cri.SANDBOX_NOTREADY, before[ids[1]][1])
    criproxy.start()
    pods.client.reconnect()
    after = {i.id: (i.state, i.metadata.name) for i in
             pods.client.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items if i.id in ids}
    assert after == before
    for sid in ids:
        assert pods.status(sid).status.network.ip == ips[sid]
    for sid in ids[2:]:
        assert ips[sid] in netns_addresses(netns[sid])
    assert ping(ips[ids[5]])
    _kill_pause(pods, ids[2])                                          # watchers are back, too
    _wait_state(pods, ids[2], cri.SANDBOX_NOTREADY)
    assert pods.run(pod_config("r3-again")) not in ids                 # names and new runs still work
    for sid in ids:
        pods.stop(sid)
        pods.remove(sid)
    assert not any(ip in ipam_files(testenv.ipam_dir) for ip in ips.values())
    assert not any(Path(p).exists() for p in netns.values())
    listed = ctr("containers", "ls", "-q").split()  # type: ignore[operator]
    assert not set(ids) & set(listed)


def _pid_from_ctr(ctr: object, sid: str) -> int:
    for line in ctr("tasks", "ls").splitlines()[1:]:  # type: ignore[operator]
        fields = line.split()
        if fields and fields[0] == sid:
            return int(fields[1])
    raise AssertionError(f"no task for {sid}")


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.045, 0.07])
def test_sigkill_during_run_leaves_nothing_unremovable(delay: float, criproxy_factory: CriproxyFactory,
                                                       testenv: Environment) -> None:
    """Killed at some point inside RunPodSandbox: after the restart the pod is either listed (and
    stop+remove clean it up) or absent, with every partial leftover cleaned up in the background."""
    proc = criproxy_factory(namespace="criproxy-crash")
    with proc.client() as client:
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.pause_image)))
        pods = Pods(client)
        ips_before, base = ipam_files(testenv.ipam_dir), _leftovers(proc, testenv)
        cfg = pod_config("crash")
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(lambda: pods.run(cfg, timeout=30))
            time.sleep(delay)
            proc.kill()
            with contextlib.suppress(grpc.RpcError):
                fut.result()
        proc.start()
        client.reconnect()
        for item in client.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items:
            assert item.metadata.uid == cfg.metadata.uid
            pods.stop(item.id)
            pods.remove(item.id)
        _wait_for(lambda: _leftovers(proc, testenv) == base and ipam_files(testenv.ipam_dir) == ips_before,
                  f"leftovers cleaned: {_leftovers(proc, testenv)} vs {base}")


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.1)


def test_containerd_restart_keeps_pods_and_sees_later_exits(pods: Pods, testenv: Environment) -> None:
    sid = pods.run(pod_config("ctrd-restart"))
    ip = pods.status(sid).status.network.ip
    testenv.ctrd.restart()
    _wait_for(lambda: pods.client.runtime.Status(cri.StatusRequest()).status.conditions[0].status,
              "RuntimeReady after the containerd restart")
    assert pods.status(sid).status.state == cri.SANDBOX_READY and ping(ip)
    _kill_pause(pods, sid)                      # the Tasks.Wait watcher re-attached after the restart
    _wait_state(pods, sid, cri.SANDBOX_NOTREADY, timeout=15)
    pods.stop(sid)
    pods.remove(sid)
    assert ip not in ipam_files(testenv.ipam_dir)


@pytest.mark.parametrize("point", ["container-record", "netns", "pause-task"])
def test_sigkill_at_observed_points_of_run_leaves_nothing(point: str, criproxy_factory: CriproxyFactory,
                                                          testenv: Environment) -> None:
    """Killed the moment containerd (or the host) shows a step of RunPodSandbox done: after the
    restart and stop+remove of whatever is listed, no container, task, snapshot, netns, IP or dir."""
    proc = criproxy_factory(namespace="criproxy-crash-points")
    with proc.client() as client:
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.pause_image)))
        pods = Pods(client)
        ips_before, base = ipam_files(testenv.ipam_dir), _leftovers(proc, testenv)
        checks: dict[str, Callable[[], bool]] = {
            "container-record": lambda: bool(_leftovers(proc, testenv)["containers"]),
            "netns": lambda: bool(_leftovers(proc, testenv)["netns"]),
            "pause-task": lambda: bool(_leftovers(proc, testenv)["tasks"]),
        }
        cfg = pod_config("points")
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(lambda: pods.run(cfg, timeout=30))
            _wait_for(lambda: checks[point]() or fut.done(), f"RunPodSandbox to reach {point}", timeout=30)
            proc.kill()
            with contextlib.suppress(grpc.RpcError):
                fut.result()
        proc.start()
        client.reconnect()
        for item in client.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items:
            assert item.metadata.uid == cfg.metadata.uid
            client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=item.id))
            client.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=item.id))
        _wait_for(lambda: _leftovers(proc, testenv) == base and ipam_files(testenv.ipam_dir) == ips_before,
                  f"leftovers cleaned: {_leftovers(proc, testenv)} vs {base}")
