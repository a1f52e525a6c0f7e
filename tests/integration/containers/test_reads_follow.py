"""Status reads answer from criproxy's records; a task killed behind criproxy's back (containerd's own
API) shows in ContainerStatus, PodSandboxStatus and the lists within a second."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from criproxy.protos import cri
from tests.integration.containers.conftest import Pod, container_config

FOLLOW_WITHIN = 1.0     # seconds: the bound for a change behind criproxy's back


def _within(check: Callable[[], Any], seconds: float, what: str) -> Any:
    start = time.monotonic()
    while not (value := check()):
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what} not seen within {seconds} s")
        time.sleep(0.02)
    return value


def _pod_status(pod: Pod) -> cri.PodSandboxStatusResponse:
    return pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id))


def test_task_killed_with_ctr_shows_in_status_reads(pod: Pod, ctr: Callable[..., str]) -> None:
    cid = pod.run(container_config(pod.image, name="victim", command=["sleep", "1000"]))
    other = pod.run(container_config(pod.image, name="bystander", command=["sleep", "1000"]))
    assert pod.status(cid).state == cri.CONTAINER_RUNNING                 # answered (and kept) before
    first = _pod_status(pod)
    assert {s.id: s.state for s in first.containers_statuses}[cid] == cri.CONTAINER_RUNNING
    assert first.timestamp > 0

    ctr("tasks", "kill", "-s", "SIGKILL", cid)
    st = _within(lambda: (s := pod.status(cid)).state == cri.CONTAINER_EXITED and s, FOLLOW_WITHIN,
                 "the kill in ContainerStatus")
    assert st.exit_code == 137 and st.finished_at > 0
    _within(lambda: {s.id: s.state for s in _pod_status(pod).containers_statuses}.get(cid) == cri.CONTAINER_EXITED,
            FOLLOW_WITHIN, "the kill in PodSandboxStatus")
    listed = {c.id: c.state for c in pod.rt.ListContainers(cri.ListContainersRequest()).containers}
    assert listed[cid] == cri.CONTAINER_EXITED and listed[other] == cri.CONTAINER_RUNNING
    later = _pod_status(pod)
    assert later.timestamp > first.timestamp                              # each answer has its own time
    assert later.status.state == cri.SANDBOX_READY

    ctr("tasks", "kill", "-s", "SIGKILL", pod.id)                         # the pause process
    _within(lambda: _pod_status(pod).status.state == cri.SANDBOX_NOTREADY, FOLLOW_WITHIN,
            "the pause kill in PodSandboxStatus")
    items = pod.rt.ListPodSandbox(cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=pod.id))).items
    assert [i.state for i in items] == [cri.SANDBOX_NOTREADY]


def test_verbose_container_status_keeps_the_spec(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, name="v", command=["sleep", "1000"]))
    first = json.loads(pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True)).info["info"])
    assert first["runtimeSpec"]["process"]["args"] == ["sleep", "1000"]
    pod.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
        container_id=cid, linux=cri.LinuxContainerResources(cpu_shares=512)))
    again = json.loads(pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True)).info["info"])
    assert again["runtimeSpec"]["linux"]["resources"]["cpu"]["shares"] == 512
