"""Streaming under load and across a criproxy restart."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import HarnessError
from tests.integration.containers.conftest import Pod, pod_config, wait_for
from tests.integration.streaming import spdyclient, wsclient
from tests.integration.streaming.test_attach import TICKER, attach_url
from tests.integration.streaming.test_exec import SLEEPER, exec_url


@pytest.fixture
def running(pod: Pod) -> str:
    return pod.run(command=SLEEPER)


async def test_concurrent_execs_keep_their_own_streams(pod: Pod, running: str) -> None:
    urls = [exec_url(pod, running, "sh", "-c", f"for i in 1 2 3; do echo {n}-$i; done; exit {n}") for n in range(12)]
    results = await asyncio.gather(*(wsclient.run(u) for u in urls))
    for n, res in enumerate(results):
        assert res.stdout == f"{n}-1\n{n}-2\n{n}-3\n".encode() and res.exit_code == n


async def test_large_output_arrives_whole(pod: Pod, running: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "head -c 20000000 /dev/zero"), timeout=60)
    assert len(res.stdout) == 20_000_000 and res.exit_code == 0


async def test_exec_and_attach_after_criproxy_restart(pod: Pod, criproxy: CriproxyProcess) -> None:
    cid = pod.run(command=TICKER)
    criproxy.restart()
    pod.client.reconnect()
    pod.rt = pod.client.runtime
    res = await wsclient.run(exec_url(pod, cid, "echo", "back"))
    assert res.stdout == b"back\n" and res.exit_code == 0
    s = await wsclient.connect(attach_url(pod, cid))
    try:
        await s.read_until(wsclient.STDOUT, b"tick")
    finally:
        await s.close()


async def test_stopping_criproxy_kills_running_exec_processes(pod: Pod, running: str,
                                                              criproxy: CriproxyProcess) -> None:
    s = await wsclient.connect(exec_url(pod, running, "sh", "-c", "echo started; exec sleep 3112"))
    try:
        await s.read_until(wsclient.STDOUT, b"started")
        criproxy.stop()
        await s.read_all(timeout=10)                 # the server closed the session
    finally:
        await s.close()
    criproxy.start()
    pod.client.reconnect()
    pod.rt = pod.client.runtime
    assert "sleep 3112" not in pod.sh(running, "ps -o args")


def test_bad_streaming_address_stops_start_up(criproxy_factory: CriproxyFactory) -> None:
    proc = criproxy_factory(["--streaming-address", "127.0.0.1:notaport"], namespace="stream-bad", start=False)
    with pytest.raises(HarnessError):
        proc.start(timeout=20)
    assert "cannot serve streaming on '127.0.0.1:notaport'" in proc.log_tail(20)


@pytest.fixture
def idle_proxy(criproxy_factory: CriproxyFactory, testenv: Environment, busybox: str) -> Iterator[Pod]:
    """A criproxy whose sessions close after 1 s without traffic, with one pod running a sleeper."""
    proc = criproxy_factory(["--streaming-idle-timeout", "1"], namespace=f"stream-{uuid.uuid4().hex[:8]}")
    with proc.client() as client:
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=busybox)), timeout=120)
        pod = Pod(client, pod_config(testenv.scratch_dir("logs"), "idle"), busybox)
        try:
            yield pod
        finally:
            pod.cleanup()


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
async def test_idle_sessions_are_closed_and_their_process_killed(idle_proxy: Pod, transport: str) -> None:
    pod = idle_proxy
    cid = pod.run(command=SLEEPER)
    url = exec_url(pod, cid, "sh", "-c", "echo started; exec sleep 3113")
    started = time.monotonic()
    if transport == "websocket":
        res = await wsclient.run(url, timeout=15)
        assert res.stdout == b"started\n" and res.error == b""        # closed, no status: the client went
    else:
        c = await spdyclient.connect(url)
        try:
            await c.open({"streamType": "error"})
            out = await c.open({"streamType": "stdout"})
            await c.open({"streamType": "stderr"})
            assert await out.read_all(timeout=15) == b"started\n"
        finally:
            await c.close()
    assert 1 <= time.monotonic() - started < 10
    wait_for(lambda: "sleep 3113" not in pod.sh(cid, "ps -o args"), timeout=10, what="the exec process to die")


async def test_busy_sessions_are_not_idle(idle_proxy: Pod) -> None:
    cid = idle_proxy.run(command=SLEEPER)
    res = await wsclient.run(exec_url(idle_proxy, cid, "sh", "-c", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.3; done"))
    assert res.stdout == b"1\n2\n3\n4\n5\n6\n" and res.exit_code == 0


async def test_sessions_have_a_trace_and_gauges(pod: Pod, running: str, criproxy: CriproxyProcess) -> None:
    from tests.integration.test_observability import http_get

    assert (await wsclient.run(exec_url(pod, running, "true"))).exit_code == 0
    sock = str(criproxy.state / "debug.sock")

    def sessions() -> list[dict[str, Any]]:      # recorded when the session's cleanup is done
        return [t for t in json.loads(http_get(sock, "/traces")[1]) if t["rpc"] == "stream:exec"]

    session = wait_for(sessions, timeout=10, what="a stream:exec trace")[-1]
    calls = [(s[0], s[1], s[2]) for s in session["steps"]]
    assert ("Tasks", "Exec", "OK") in calls and ("Tasks", "Start", "OK") in calls
    assert ("Tasks", "Wait", "OK") in calls and ("Tasks", "DeleteProcess", "OK") in calls
    metrics = http_get(sock, "/metrics")[1]
    assert "criproxy_streaming_sessions " in metrics and "criproxy_streaming_tokens " in metrics


def _open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def test_many_exec_sessions_leave_nothing_behind(pod: Pod, running: str, criproxy: CriproxyProcess) -> None:
    """Finished, stdin-fed and abandoned sessions, many times over: afterwards criproxy holds no more
    file descriptors than before, no exec FIFO is left on disk, and no exec process in the container."""
    assert criproxy.pid is not None
    await wsclient.run(exec_url(pod, running, "true"))          # warm-up: the HTTP server is up
    before = _open_fds(criproxy.pid)
    for n in range(8):
        res = await wsclient.run(exec_url(pod, running, "sh", "-c", f"echo {n}"))
        assert res.stdout == f"{n}\n".encode() and res.exit_code == 0
        res = await wsclient.run(exec_url(pod, running, "cat", stdin=True), stdin=b"x" * 1000)
        assert res.stdout == b"x" * 1000
        s = await wsclient.connect(exec_url(pod, running, "sh", "-c", f"echo up; exec sleep 4{n}17"))
        await s.read_until(wsclient.STDOUT, b"up")
        await s.close()                                         # the client walks away mid-session
    exec_dir = criproxy.state / "containers" / running / "exec"
    wait_for(lambda: not (exec_dir.exists() and any(exec_dir.iterdir())), 10, what="exec FIFO dirs to go")
    wait_for(lambda: _open_fds(criproxy.pid or 0) <= before + 2, 10, what=f"criproxy's fds to return to {before}")
    assert "sleep 4" not in pod.sh(running, "ps -o args")


def _rss_kib(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


async def test_stdin_nobody_reads_is_buffered_within_a_bound(pod: Pod, running: str, criproxy: CriproxyProcess) -> None:
    """A client pushing stdin in big messages (up to 16 MiB each are allowed) to a process that never
    reads it: criproxy stops reading the socket after a few MiB instead of queueing 64 whole messages."""
    assert criproxy.pid is not None
    s = await wsclient.connect(exec_url(pod, running, "sh", "-c", "echo up; sleep 3; exec cat >/dev/null", stdin=True))
    try:
        await s.read_until(wsclient.STDOUT, b"up")
        before = _rss_kib(criproxy.pid)
        piece = b"z" * (4 * 1024 * 1024)

        async def push() -> None:
            for _ in range(48):
                await s.send(wsclient.STDIN, piece)
        sender = asyncio.create_task(push())
        await asyncio.wait([sender], timeout=1.5)
        grown = _rss_kib(criproxy.pid) - before
        await asyncio.wait_for(sender, 30)               # cat drains it all once it starts
        await s.close_stdin()
        assert (await s.read_all()).exit_code == 0
        assert grown < 64 * 1024, f"criproxy buffered {grown} KiB of stdin nobody reads"
    finally:
        await s.close()
