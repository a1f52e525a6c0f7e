"""Replays what a kubelet does for a static pod, in its order, while its background polling runs.

Foreground: Version, UpdateRuntimeConfig, RunPodSandbox, PodSandboxStatus, ImageStatus, PullImage,
ImageStatus, CreateContainer, StartContainer, ContainerStatus, ExecSync liveness probes; a failing probe
→ StopContainer, CreateContainer (attempt 1), StartContainer with ``1.log`` beside ``0.log``; then
StopContainer, StopPodSandbox, RemoveContainer, StopPodSandbox again, RemovePodSandbox. Background
(like the kubelet's relist and stats loops): ListPodSandbox + ListContainers every 1 s, Status every
5 s, ImageFsInfo, ListContainerStats and ListImages every 10 s (scaled down 2x to keep the test short).
Every call must succeed and nothing may be left in containerd.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.containers.conftest import container_config, pod_config, read_log, wait_for

SCALE = 0.5


class Poller:
    """The kubelet's periodic calls, each on its own schedule, errors collected."""

    def __init__(self, client: CriClient) -> None:
        rt, img = client.runtime, client.image
        self.calls: list[tuple[float, Callable[[], Any]]] = [
            (1.0, lambda: (rt.ListPodSandbox(cri.ListPodSandboxRequest()),
                           rt.ListContainers(cri.ListContainersRequest()))),
            (5.0, lambda: rt.Status(cri.StatusRequest())),
            (10.0, lambda: img.ImageFsInfo(cri.ImageFsInfoRequest())),
            (10.0, lambda: rt.ListContainerStats(cri.ListContainerStatsRequest())),
            (10.0, lambda: img.ListImages(cri.ListImagesRequest())),
        ]
        self.errors: list[str] = []
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        due = [0.0] * len(self.calls)
        while not self.stop.is_set():
            now = time.monotonic()
            for i, (period, call) in enumerate(self.calls):
                if now >= due[i]:
                    due[i] = now + period * SCALE
                    try:
                        call()
                        self.count += 1
                    except Exception as e:
                        self.errors.append(repr(e))
            self.stop.wait(0.05)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _probe(rt: Any, cid: str) -> bool:
    resp = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["test", "-f", "/tmp/healthy"], timeout=1),
                       timeout=121)
    return bool(resp.exit_code == 0)


def _start_attempt(rt: Any, img: Any, pod_id: str, pod_cfg: cri.PodSandboxConfig, image: str, attempt: int) -> str:
    img.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))
    cfg = container_config(image, name="app", attempt=attempt,
                           command=["sh", "-c", "mkdir -p /tmp; touch /tmp/healthy; echo up; sleep 2; "
                                                "rm /tmp/healthy; sleep 1000"])
    cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg,
                                                        sandbox_config=pod_cfg)).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    assert rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status.state == cri.CONTAINER_RUNNING
    return str(cid)


def test_static_pod_replay(cri: CriClient, testenv: Environment, busybox: str, ctr: Any,
                           criproxy_proc: CriproxyProcess) -> None:
    rt, img = cri.runtime, cri.image
    pod_cfg = pod_config(testenv.scratch_dir("kubelet-logs"), "static-web")
    with Poller(cri) as poller:
        rt.Version(cri.pb.VersionRequest())
        rt.UpdateRuntimeConfig(cri.pb.UpdateRuntimeConfigRequest(runtime_config=cri.pb.RuntimeConfig(
            network_config=cri.pb.NetworkConfig(pod_cidr=testenv.criproxy_net.subnet))))
        pod_id = rt.RunPodSandbox(cri.pb.RunPodSandboxRequest(config=pod_cfg), timeout=240).pod_sandbox_id
        assert rt.PodSandboxStatus(cri.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.state == \
            cri.pb.SANDBOX_READY
        img.ImageStatus(cri.pb.ImageStatusRequest(image=cri.pb.ImageSpec(image=busybox)))
        assert img.PullImage(cri.pb.PullImageRequest(image=cri.pb.ImageSpec(image=busybox),
                                                     sandbox_config=pod_cfg)).image_ref
        first = _start_attempt(rt, img, pod_id, pod_cfg, busybox, 0)
        assert _probe(rt, first)
        wait_for(lambda: not _probe(rt, first), timeout=20, interval=0.5, what="the liveness probe to fail")
        rt.StopContainer(cri.pb.StopContainerRequest(container_id=first, timeout=2), timeout=122)
        second = _start_attempt(rt, img, pod_id, pod_cfg, busybox, 1)
        assert _probe(rt, second)
        app_logs = sorted(p.name for p in (wait_for(lambda: _log_dir(pod_cfg)).iterdir()))
        assert app_logs == ["0.log", "1.log"]
        assert read_log(_log_dir(pod_cfg) / "1.log")[0] == ("stdout", "F", "up")
        rt.StopContainer(cri.pb.StopContainerRequest(container_id=second, timeout=2), timeout=122)
        rt.StopPodSandbox(cri.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemoveContainer(cri.pb.RemoveContainerRequest(container_id=first))
        rt.RemoveContainer(cri.pb.RemoveContainerRequest(container_id=second))
        rt.StopPodSandbox(cri.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        time.sleep(1.0 * SCALE)
    assert poller.errors == [] and poller.count > 10
    for what in ("containers", "tasks", "snapshots"):
        out = ctr(what, "ls")
        assert pod_id not in out and first not in out and second not in out
    state = criproxy_proc.base / "state" / "containers"
    assert not (state / first).exists() and not (state / second).exists()
    listed = rt.ListContainers(cri.pb.ListContainersRequest(filter=cri.pb.ContainerFilter(pod_sandbox_id=pod_id)))
    assert not listed.containers


def _log_dir(pod_cfg: cri.PodSandboxConfig) -> Any:
    from pathlib import Path

    d = Path(pod_cfg.log_directory) / "app"
    return d if d.exists() else None
