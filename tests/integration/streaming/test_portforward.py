"""PortForward over WebSocket into the pod's network namespace, tokens, and where the server listens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.harness.proc import free_port
from tests.integration.containers.conftest import Pod, pod_config
from tests.integration.streaming import wsclient

# Listens on the pod's loopback only: reachable through port-forward, not from the host.
HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && "
                     "exec httpd -f -p 127.0.0.1:8080 -h /www"]


def pf_url(pod: Pod, *ports: int) -> str:
    return str(pod.rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod.id, port=list(ports))).url)


async def http_through(url: str, port_count: int = 1, protocols: tuple[str, ...] = ("v4.channel.k8s.io",)
                       ) -> wsclient.Result:
    """GET / over data channel 0 of a port-forward socket; everything the server sent until it closed."""
    s = await wsclient.connect(url, protocols)
    try:
        await s.send(0, b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        return await s.read_all(timeout=20)
    finally:
        await s.close()


async def serving_pod(pod: Pod, query: str = "") -> None:
    pod.run(command=HTTPD)
    for _ in range(100):
        res = await http_through(pf_url(pod, 8080) + query)
        if b"hello-from-pod" in res.out[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("httpd never answered through port-forward")


async def test_port_forward_reaches_pod_loopback(pod: Pod) -> None:
    await serving_pod(pod)
    res = await http_through(pf_url(pod, 8080))
    assert res.frames[0] == (0, (8080).to_bytes(2, "little"))     # data channel opens with the port
    assert res.frames[1] == (1, (8080).to_bytes(2, "little"))     # so does the error channel
    data = bytes(res.out[0])[2:]
    assert data.startswith(b"HTTP/1.") and b"hello-from-pod" in data
    assert bytes(res.out[1])[2:] == b""                           # no error


async def test_ports_from_query_when_request_names_none(pod: Pod) -> None:
    await serving_pod(pod)
    res = await http_through(pf_url(pod) + "?port=8080")
    assert b"hello-from-pod" in res.out[0]


async def test_nothing_listening_reports_on_error_channel(pod: Pod) -> None:
    pod.run(command=["sleep", "3600"])
    res = await http_through(pf_url(pod, 8081))
    err = bytes(res.out[1])[2:]
    assert b"error forwarding port 8081" in err and b"refused" in err.lower()


async def test_two_ports_in_one_session(pod: Pod) -> None:
    await serving_pod(pod)
    s = await wsclient.connect(pf_url(pod, 8080, 8082), ("v4.channel.k8s.io",))
    try:
        await s.send(0, b"GET / HTTP/1.0\r\n\r\n")
        res = await s.read_all(timeout=20)
    finally:
        await s.close()
    assert b"hello-from-pod" in res.out[0]
    assert res.out[2] == bytearray((8082).to_bytes(2, "little"))
    assert b"error forwarding port 8082" in res.out[3]


def test_port_forward_validation(pod: Pod) -> None:
    def code(**kw: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as e:
            pod.rt.PortForward(cri.PortForwardRequest(**kw))    # type: ignore[arg-type]
        return e.value.code()  # type: ignore[no-any-return]

    assert code(pod_sandbox_id="doesnotexist", port=[80]) == grpc.StatusCode.NOT_FOUND
    assert code(pod_sandbox_id="", port=[80]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(pod_sandbox_id=pod.id, port=[70000]) == grpc.StatusCode.INVALID_ARGUMENT
    pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
    assert code(pod_sandbox_id=pod.id, port=[80]) == grpc.StatusCode.FAILED_PRECONDITION


def _listening(port: int) -> list[str]:
    """Local addresses of sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, state = fields[1], fields[3]
            if state == "0A" and int(addr.split(":")[1], 16) == port:
                found.append(addr.split(":")[0])
    return found


async def test_server_listens_on_loopback_only(pod: Pod) -> None:
    pod.run(command=["sleep", "3600"])
    url = pf_url(pod, 80)
    port = int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    assert url.startswith(f"http://127.0.0.1:{port}/portforward/")
    assert _listening(port) == ["0100007F"]                       # 127.0.0.1, nothing else


async def test_plain_http_without_upgrade_is_refused(pod: Pod) -> None:
    pod.run(command=["sleep", "3600"])
    async with aiohttp.ClientSession() as http, http.get(pf_url(pod, 80)) as resp:
        assert resp.status == 400


# -- token lifetime and limits on an instance of their own ----------------------------------------------
@pytest.fixture
def short_ttl(criproxy_factory: CriproxyFactory, testenv: Environment) -> Iterator[Callable[[], str]]:
    """A criproxy with 1 s tokens (at most 3 outstanding) and one ready pod; returns a PortForward URL maker."""
    proc = criproxy_factory(["--streaming-token-ttl", "1", "--streaming-max-tokens", "3"],
                            namespace=f"stream-{uuid.uuid4().hex[:8]}")
    with proc.client() as client:
        rt = client.runtime
        cfg = pod_config(testenv.scratch_dir("logs"), "ttl")
        sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
        try:
            yield lambda: str(rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=sid, port=[80])).url)
        finally:
            rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))
            rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))


async def test_token_expires(short_ttl: Callable[[], str]) -> None:
    url = short_ttl()
    await asyncio.sleep(1.2)
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await wsclient.run(url, protocols=("v4.channel.k8s.io",))
    assert e.value.status == 404


async def test_outstanding_tokens_are_bounded(short_ttl: Callable[[], str]) -> None:
    for _ in range(3):
        short_ttl()
    with pytest.raises(grpc.RpcError) as e:
        short_ttl()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await asyncio.sleep(1.2)                                      # expired ones are purged
    assert "/portforward/" in short_ttl()


async def test_host_network_pod_forwards_to_host_loopback(make_pod: Callable[..., Pod]) -> None:
    ns = cri.NamespaceOption(network=cri.NODE)
    pod = make_pod("hostnet", linux=cri.LinuxPodSandboxConfig(
        security_context=cri.LinuxSandboxSecurityContext(namespace_options=ns)))
    port = free_port()
    pod.run(command=["sh", "-c", "mkdir -p /www && echo hello-from-host-net > /www/index.html && "
                                 f"exec httpd -f -p 127.0.0.1:{port} -h /www"])
    for _ in range(100):
        res = await http_through(pf_url(pod, port))
        if b"hello-from-host-net" in res.out[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer through port-forward: {res.frames}")


# -- the same against containerd's built-in CRI: the reference reaches a pod's 127.0.0.1 on the same
# user-shaped conflist (no loopback plugin in it) -----------------------------------------------------
async def test_builtin_cri_port_forward_reaches_pod_loopback(builtin_cri: CriClient,
                                                            testenv: Environment) -> None:
    builtin_cri.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)),
                                timeout=300)
    pod = Pod(builtin_cri, pod_config(testenv.scratch_dir("logs"), "pf-builtin"), testenv.busybox_image)
    try:
        await serving_pod(pod, query="?port=8080")   # its WebSocket port-forward takes ports from the query
    finally:
        pod.cleanup()
