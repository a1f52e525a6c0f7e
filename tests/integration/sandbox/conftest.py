"""Helpers for the pod sandbox tests: pod configs, a tracker that removes pods at the end, host checks."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient


def pod_config(name: str = "pod", namespace: str = "default", attempt: int = 0, host_network: bool = False,
               **kw: object) -> cri.PodSandboxConfig:
    """A kubelet-like PodSandboxConfig with a fresh UID."""
    uid = str(uuid.uuid4())
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=attempt),
        hostname=name, log_directory=f"/tmp/criproxy-test-logs/{namespace}_{name}_{uid}",
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.uid": uid},
        annotations={"kubernetes.io/config.source": "api"}, **kw)  # type: ignore[arg-type]
    cfg.linux.security_context.namespace_options.network = cri.NODE if host_network else cri.POD
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


class Pods:
    """Runs pods through CRI and removes whatever a test left behind."""

    def __init__(self, client: CriClient) -> None:
        self.client = client
        self.ids: list[str] = []

    def run(self, cfg: cri.PodSandboxConfig, handler: str = "", timeout: float = 60) -> str:
        resp = self.client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                                 timeout=timeout)
        self.ids.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id)

    def status(self, sandbox_id: str, verbose: bool = False) -> cri.PodSandboxStatusResponse:
        return self.client.runtime.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose))

    def info(self, sandbox_id: str) -> dict[str, object]:
        return dict(json.loads(self.status(sandbox_id, verbose=True).info["info"]))

    def stop(self, sandbox_id: str) -> None:
        self.client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    def remove(self, sandbox_id: str) -> None:
        self.client.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    def cleanup(self) -> None:
        for sid in reversed(self.ids):
            try:
                self.stop(sid)
                self.remove(sid)
            except Exception:  # best effort; the test's own assertions matter
                pass


@pytest.fixture
def pods(cri: CriClient) -> Iterator[Pods]:
    tracker = Pods(cri)
    yield tracker
    tracker.cleanup()


def netns_exec(netns_path: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a host command inside a pod's network namespace."""
    return subprocess.run(["nsenter", f"--net={netns_path}", *argv], capture_output=True, text=True, timeout=30)


def netns_addresses(netns_path: str) -> list[str]:
    out = netns_exec(netns_path, "ip", "-j", "addr").stdout
    return [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def ping(ip: str, netns_path: str | None = None) -> bool:
    argv = ["busybox", "ping", "-c", "1", "-W", "2", ip]
    if netns_path:
        return netns_exec(netns_path, *argv).returncode == 0
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def ipam_files(ipam_dir: Path) -> list[str]:
    """IPs host-local has allocated (its files named like addresses)."""
    return sorted(p.name for p in ipam_dir.rglob("*") if p.name[:1].isdigit() and "." in p.name)
