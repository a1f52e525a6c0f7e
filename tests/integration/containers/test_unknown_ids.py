"""Every call naming a container or pod that does not exist answers NOT_FOUND; stop/remove succeed."""

from __future__ import annotations

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient

MISSING = "0" * 64


@pytest.mark.parametrize("method,request_", [
    ("ContainerStatus", cri.ContainerStatusRequest(container_id=MISSING)),
    ("StartContainer", cri.StartContainerRequest(container_id=MISSING)),
    ("ExecSync", cri.ExecSyncRequest(container_id=MISSING, cmd=["true"])),
    ("Exec", cri.ExecRequest(container_id=MISSING, cmd=["true"], stdout=True)),
    ("Attach", cri.AttachRequest(container_id=MISSING, stdout=True)),
    ("UpdateContainerResources", cri.UpdateContainerResourcesRequest(container_id=MISSING)),
    ("ReopenContainerLog", cri.ReopenContainerLogRequest(container_id=MISSING)),
    ("ContainerStats", cri.ContainerStatsRequest(container_id=MISSING)),
    ("PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=MISSING)),
    ("PodSandboxStats", cri.PodSandboxStatsRequest(pod_sandbox_id=MISSING)),
    ("UpdatePodSandboxResources", cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id=MISSING)),
    ("PortForward", cri.PortForwardRequest(pod_sandbox_id=MISSING, port=[80])),
    ("CreateContainer", cri.CreateContainerRequest(
        pod_sandbox_id=MISSING, config=cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"),
                                                           image=cri.ImageSpec(image="busybox")))),
])
def test_unknown_id_is_not_found(cri: CriClient, method: str, request_: object) -> None:
    with pytest.raises(grpc.RpcError) as e:
        getattr(cri.runtime, method)(request_, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()


@pytest.mark.parametrize("method,request_", [
    ("StopContainer", cri.StopContainerRequest(container_id=MISSING)),
    ("RemoveContainer", cri.RemoveContainerRequest(container_id=MISSING)),
    ("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=MISSING)),
    ("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=MISSING)),
])
def test_stop_remove_unknown_id_succeed(cri: CriClient, method: str, request_: object) -> None:
    getattr(cri.runtime, method)(request_, timeout=10)
