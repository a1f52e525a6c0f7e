"""Concurrent calls on one pod or container: the outcome is what the calls' order would give."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from criproxy.protos import cri

from .conftest import Pod, container_config


def _call_ignoring_precondition(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND), e


def test_stop_pod_during_start_container_leaves_it_not_running(make_pod: Callable[..., Pod]) -> None:
    """StopPodSandbox arriving while StartContainer is in Tasks.Create: once both have answered, the
    container is not running (kubelet takes a stopped pod's containers as stopped)."""
    for i in range(3):
        pod = make_pod(f"race{i}")
        cid = pod.create(command=["sleep", "60"])
        with ThreadPoolExecutor(2) as ex:
            start = ex.submit(_call_ignoring_precondition,
                              pod.rt.StartContainer, cri.StartContainerRequest(container_id=cid))
            time.sleep(0.01)
            pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
            start.result(timeout=60)
        assert pod.status(cid).state != cri.CONTAINER_RUNNING, f"attempt {i}"



def test_create_container_cancelled_part_way_leaves_nothing_in_containerd(
        pod: Pod, ctr: Callable[..., str]) -> None:
    """A CreateContainer whose caller gives up (deadline) at any point leaves no containerd container
    or snapshot that criproxy does not list (after a restart, recovery would show it as a phantom)."""
    snapshots_before = _snapshot_keys(ctr)
    for n in range(40):
        cfg = container_config(pod.image, name=f"d{n}", command=["sleep", "60"])
        try:
            pod.rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg,
                                                              sandbox_config=pod.cfg), timeout=0.002 * n)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    listed = {c.id for c in pod.rt.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(pod_sandbox_id=pod.id))).containers}
    pod.containers.extend(listed)
    in_ctrd = set(ctr("containers", "ls", "-q", f'labels."io.cri-containerd.sandbox-id"=={pod.id}').split())
    assert in_ctrd - listed == set()
    assert _snapshot_keys(ctr) - snapshots_before - listed == set()


def _snapshot_keys(ctr: Callable[..., str]) -> set[str]:
    return {line.split()[0] for line in ctr("snapshots", "ls").splitlines()[1:] if line.strip()}


def test_concurrent_stop_and_remove_calls_all_succeed(make_pod: Callable[..., Pod],
                                                      ctr: Callable[..., str]) -> None:
    """kubelet's pod workers and GC may stop and remove the same container and pod at once: every
    call succeeds and nothing is left."""
    pod = make_pod("crowd")
    cids = [pod.run(name=f"c{n}", command=["sleep", "60"]) for n in range(3)]
    calls: list[tuple[Callable[..., object], object]] = []
    for cid in cids:
        calls += [(pod.rt.StopContainer, cri.StopContainerRequest(container_id=cid, timeout=1)),
                  (pod.rt.RemoveContainer, cri.RemoveContainerRequest(container_id=cid))] * 2
    calls += [(pod.rt.StopPodSandbox, cri.StopPodSandboxRequest(pod_sandbox_id=pod.id)),
              (pod.rt.RemovePodSandbox, cri.RemovePodSandboxRequest(pod_sandbox_id=pod.id))] * 2
    with ThreadPoolExecutor(len(calls)) as ex:
        for f in [ex.submit(fn, req, timeout=60) for fn, req in calls]:
            f.result()
    pod.containers.clear()
    assert all(c.pod_sandbox_id != pod.id for c in pod.rt.ListContainers(cri.ListContainersRequest()).containers)
    assert ctr("containers", "ls", "-q", f'labels."io.cri-containerd.sandbox-id"=={pod.id}').split() == []
    assert pod.id not in ctr("containers", "ls", "-q").split()


def test_create_retry_after_caller_gave_up_gets_a_container(pod: Pod) -> None:
    """kubelet retries CreateContainer with the same config after its deadline passed: the retry
    gets a container, even when it arrives while the abandoned call is still being undone."""
    for n in range(20):
        cfg = container_config(pod.image, name=f"r{n}", command=["sleep", "60"])
        req = cri.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg, sandbox_config=pod.cfg)
        try:
            pod.containers.append(pod.rt.CreateContainer(req, timeout=0.003 * n).container_id)
            continue
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
        cid = pod.rt.CreateContainer(req, timeout=30).container_id
        pod.containers.append(cid)
        assert pod.status(cid).state == cri.CONTAINER_CREATED
