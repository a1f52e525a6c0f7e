"""Exec, attach and port-forward over SPDY/3.1 (the transport of older kubelets, crictl and kubectl)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.integration.containers.conftest import Pod, container_config
from tests.integration.streaming import spdyclient
from tests.integration.streaming.test_attach import TICKER, attach_url
from tests.integration.streaming.test_exec import SLEEPER, exec_url
from tests.integration.streaming.test_portforward import pf_url, serving_pod


@pytest.fixture
def running(pod: Pod) -> str:
    return pod.run(command=SLEEPER)


async def remote_command(url: str, stdin: bytes | None = None, stderr: bool = True,
                         protocols: tuple[str, ...] = ("v4.channel.k8s.io",)) -> tuple[bytes, bytes, bytes]:
    """Streams as client-go creates them (error first), stdin sent and closed; (stdout, stderr, error)."""
    c = await spdyclient.connect(url, protocols)
    assert c.status == 101 and c.headers["x-stream-protocol-version"] == protocols[0]
    try:
        err = await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"}) if stdin is not None else None
        out = await c.open({"streamType": "stdout"})
        serr = await c.open({"streamType": "stderr"}) if stderr else None
        if sin is not None:
            data = stdin or b""
            pieces = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [b""]
            for piece in pieces[:-1]:                   # many small frames: more than the server queues,
                await sin.write(piece)
            await sin.write(pieces[-1], fin=True)       # and FIN on the last one that carries data
        result = (await out.read_all(), await serr.read_all() if serr else b"", await err.read_all())
        await c.goaway.wait()
        return result
    finally:
        await c.close()


async def test_spdy_exec_output_and_success(pod: Pod, running: str) -> None:
    out, err, status = await remote_command(exec_url(pod, running, "sh", "-c", "echo hi; echo ho >&2"))
    assert (out, err) == (b"hi\n", b"ho\n")
    assert json.loads(status) == {"metadata": {}, "status": "Success"}


async def test_spdy_exec_exit_code(pod: Pod, running: str) -> None:
    _, _, status = await remote_command(exec_url(pod, running, "sh", "-c", "exit 9"))
    st = json.loads(status)
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "9"}]


async def test_spdy_v2_protocol_gets_plain_text_status(pod: Pod, running: str) -> None:
    _, _, status = await remote_command(exec_url(pod, running, "sh", "-c", "exit 9"),
                                        protocols=("v2.channel.k8s.io",))
    assert status.startswith(b"command terminated with non-zero exit code") and status.endswith(b"exit code 9")


async def test_spdy_exec_stdin_round_trip(pod: Pod, running: str) -> None:
    data = b"x" * 800_000 + b"\nend\n"
    out, _, status = await remote_command(exec_url(pod, running, "sh", "-c", "sleep 0.5; cat", stdin=True),
                                          stdin=data)
    assert out == data and json.loads(status)["status"] == "Success"


async def test_spdy_tty_resize(pod: Pod, running: str) -> None:
    script = 'while read x; do [ "$x" = q ] && exit 0; echo "size=$(stty size)"; done'
    c = await spdyclient.connect(exec_url(pod, running, "sh", "-c", script, stdin=True, tty=True))
    try:
        err = await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"})
        out = await c.open({"streamType": "stdout"})
        resize = await c.open({"streamType": "resize"})
        await resize.write(json.dumps({"Width": 77, "Height": 33}).encode())
        for _ in range(100):
            await sin.write(b"\r")
            try:
                await out.wait_for(b"size=33 77", timeout=0.2)
                break
            except TimeoutError:
                continue
        await sin.write(b"q\r")
        assert json.loads(await err.read_all())["status"] == "Success"
        assert b"size=33 77" in out.data
    finally:
        await c.close()


async def test_spdy_attach_sees_output(pod: Pod) -> None:
    cid = pod.run(command=TICKER)
    c = await spdyclient.connect(attach_url(pod, cid))
    try:
        await c.open({"streamType": "error"})
        out = await c.open({"streamType": "stdout"})
        serr = await c.open({"streamType": "stderr"})
        await out.wait_for(b"tick")
        await serr.wait_for(b"tock")
    finally:
        await c.close()
    assert pod.status(cid).state == cri.CONTAINER_RUNNING


async def test_spdy_attach_stdin(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", "while read l; do echo got:$l; done"], stdin=True))
    c = await spdyclient.connect(attach_url(pod, cid, stdin=True, stderr=False))
    try:
        await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"})
        out = await c.open({"streamType": "stdout"})
        await sin.write(b"spdy\n")
        await out.wait_for(b"got:spdy\n")
    finally:
        await c.close()


async def test_spdy_port_forward_several_connections_on_one_session(pod: Pod) -> None:
    await serving_pod(pod)
    c = await spdyclient.connect(pf_url(pod), ("portforward.k8s.io",))
    assert c.status == 101 and c.headers["x-stream-protocol-version"] == "portforward.k8s.io"
    try:
        for rid in ("0", "1"):
            err = await c.open({"streamType": "error", "port": "8080", "requestID": rid})
            await err.close()                            # as kubectl does: it never writes there
            data = await c.open({"streamType": "data", "port": "8080", "requestID": rid})
            await data.write(b"GET / HTTP/1.0\r\n\r\n")
            body = await data.read_all()
            assert body.startswith(b"HTTP/1.") and b"hello-from-pod" in body
            assert await err.read_all() == b""
        err = await c.open({"streamType": "error", "port": "9999", "requestID": "2"})
        data = await c.open({"streamType": "data", "port": "9999", "requestID": "2"})
        assert b"error forwarding port 9999" in await err.read_all()
        await data.read_all()
        await c.ping(7)                                  # client pings are echoed
        await asyncio.wait_for(c.pong.wait(), 5)
        assert c.pongs == [7]
    finally:
        await c.close()


async def test_spdy_unsupported_protocol_is_refused(pod: Pod, running: str) -> None:
    c = await spdyclient.connect(exec_url(pod, running, "true"), ("v9.channel.k8s.io",))
    try:
        assert c.status == 403
    finally:
        await c.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_spdy_port_forward_session_does_not_grow_with_its_connections(
        pod: Pod, criproxy: CriproxyProcess) -> None:
    """kubectl port-forward serving a browser opens a stream pair per connection for hours: finished
    pairs must be forgotten (each one held ~8 KiB until the session ended)."""
    assert criproxy.pid is not None
    c = await spdyclient.connect(pf_url(pod), ("portforward.k8s.io",))

    async def connections(first: int, count: int) -> None:
        for rid in range(first, first + count):
            err = await c.open({"streamType": "error", "port": "9999", "requestID": str(rid)})
            data = await c.open({"streamType": "data", "port": "9999", "requestID": str(rid)})
            assert b"error forwarding port 9999" in await err.read_all()
            await data.read_all()
            del c.streams[err.id], c.streams[data.id]
    try:
        await connections(0, 300)                       # warm-up: allocator pools, caches
        before = _rss_kib(criproxy.pid)
        await connections(300, 2500)
        grown = _rss_kib(criproxy.pid) - before
        assert grown < 6 * 1024, f"criproxy grew {grown} KiB over 2500 forwarded connections"
    finally:
        await c.close()
