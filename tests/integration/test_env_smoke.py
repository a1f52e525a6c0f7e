"""The test environment itself works, without criproxy: registry, private containerd, runc, CNI, pause.

If these fail, every other integration failure is about the machine or the harness, not criproxy.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.harness.proc import http_get

pytestmark = pytest.mark.integration


def test_ctr_pulls_from_session_registry_and_runs(testenv: Environment) -> None:
    testenv.ctr("images", "pull", "--plain-http", testenv.busybox_image, namespace="smoke")
    out = testenv.ctr("run", "--rm", testenv.busybox_image, f"smoke-{uuid.uuid4().hex[:12]}",
                      "echo", "hello", namespace="smoke")
    assert out.strip() == "hello"


def test_builtin_cri_answers_version(builtin_cri: CriClient) -> None:
    v = builtin_cri.version()
    assert v.runtime_name == "containerd"
    assert v.runtime_api_version == "v1"


def _wait_for(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_builtin_cri_runs_a_networked_pod(testenv: Environment, builtin_cri: CriClient) -> None:
    """Pause image, sandbox_image, hosts.toml, CNI bridge and host->pod traffic all work."""
    pb = builtin_cri.pb
    uid = uuid.uuid4().hex[:12]
    logdir = testenv.base / "pods" / uid
    logdir.mkdir(parents=True)
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"smoke-{uid}", uid=uid, namespace="smoke"),
        hostname="smoke", log_directory=str(logdir), linux=pb.LinuxPodSandboxConfig())
    pod_id = builtin_cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config)).pod_sandbox_id
    try:
        status = builtin_cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
        ip = status.network.ip
        assert testenv.containerd_net.contains(ip), ip

        image = pb.ImageSpec(image=testenv.busybox_image)
        builtin_cri.image.PullImage(pb.PullImageRequest(image=image, sandbox_config=sandbox_config))
        ctr_config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="web"), image=image, log_path="web.log",
            command=["sh", "-c", "echo hello-cri; exec httpd -f -p 8080 -h /etc"])
        cid = builtin_cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=ctr_config, sandbox_config=sandbox_config)).container_id
        builtin_cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))

        log = logdir / "web.log"
        _wait_for(lambda: log.exists() and "hello-cri" in log.read_text())
        body = b""

        def fetched() -> bool:
            nonlocal body
            try:
                body = http_get(f"http://{ip}:8080/group", timeout=2)
                return True
            except OSError:
                return False
        _wait_for(fetched)
        assert b"extra:x:2000:app" in body
    finally:
        builtin_cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        builtin_cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
