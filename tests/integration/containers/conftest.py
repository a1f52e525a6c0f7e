"""Helpers for the container tests: a pod per test, container configs, waiting, log parsing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment


def pod_config(log_dir: Path, name: str = "pod", **kw: Any) -> cri.PodSandboxConfig:
    uid = str(uuid.uuid4())
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=uid, attempt=0),
        hostname=name, log_directory=str(log_dir / f"default_{name}_{uid}"),
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.uid": uid}, **kw)
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


def container_config(image: str, name: str = "c", command: list[str] | None = None, attempt: int = 0,
                     **kw: Any) -> cri.ContainerConfig:
    cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name, attempt=attempt),
                              image=cri.ImageSpec(image=image), command=command or [],
                              log_path=f"{name}/{attempt}.log",
                              labels={"io.kubernetes.container.name": name}, **kw)
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


def read_log(path: Path) -> list[tuple[str, str, str]]:
    """(stream, tag, text) per CRI log record."""
    out = []
    for line in path.read_text().splitlines():
        _ts, stream, tag, text = line.split(" ", 3)
        out.append((stream, tag, text))
    return out


def wait_for(check: Callable[[], Any], timeout: float = 20, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Pod:
    """One running pod and the containers a test makes in it; everything removed at the end."""

    def __init__(self, client: CriClient, cfg: cri.PodSandboxConfig, image: str, handler: str = "") -> None:
        self.client, self.cfg, self.image = client, cfg, image
        self.rt = client.runtime
        self.id = self.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                        timeout=60).pod_sandbox_id
        self.containers: list[str] = []

    @property
    def log_dir(self) -> Path:
        return Path(self.cfg.log_directory)

    def create(self, cfg: cri.ContainerConfig | None = None, **kw: Any) -> str:
        cfg = cfg if cfg is not None else container_config(self.image, **kw)
        cid = self.rt.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=self.id, config=cfg, sandbox_config=self.cfg)).container_id
        self.containers.append(cid)
        return str(cid)

    def run(self, cfg: cri.ContainerConfig | None = None, **kw: Any) -> str:
        cid = self.create(cfg, **kw)
        self.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        return cid

    def status(self, cid: str, verbose: bool = False) -> cri.ContainerStatus:
        return self.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=verbose)).status

    def wait_exit(self, cid: str, timeout: float = 20) -> cri.ContainerStatus:
        return wait_for(lambda: (s := self.status(cid)).state == cri.CONTAINER_EXITED and s, timeout,
                        what=f"container {cid[:12]} to exit")

    def exec(self, cid: str, *cmd: str, timeout: int = 10) -> cri.ExecSyncResponse:
        return self.rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout),
                                timeout=timeout + 30)

    def sh(self, cid: str, script: str) -> str:
        resp = self.exec(cid, "sh", "-c", script)
        assert resp.exit_code == 0, (resp.exit_code, resp.stderr)
        return resp.stdout.decode()

    def log(self, name: str = "c", attempt: int = 0) -> Path:
        return self.log_dir / name / f"{attempt}.log"

    def cleanup(self) -> None:
        for cid in self.containers:
            try:
                self.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
                self.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
            except Exception:
                pass
        try:
            self.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=self.id))
            self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=self.id))
        except Exception:
            pass


@pytest.fixture(scope="session")
def busybox(testenv: Environment, criproxy_proc: CriproxyProcess) -> str:
    """busybox pulled into criproxy's namespace once (through CRI PullImage)."""
    with criproxy_proc.client() as client:
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=120)
    return testenv.busybox_image


@pytest.fixture
def make_pod(cri: CriClient, testenv: Environment, busybox: str) -> Iterator[Callable[..., Pod]]:
    made: list[Pod] = []
    logs = testenv.scratch_dir("logs")

    def make(name: str = "pod", **kw: Any) -> Pod:
        pod = Pod(cri, pod_config(logs, name, **kw), busybox)
        made.append(pod)
        return pod
    yield make
    for pod in reversed(made):
        pod.cleanup()


@pytest.fixture
def pod(make_pod: Callable[..., Pod]) -> Pod:
    return make_pod()
