"""What one SPDY connection may cost: streams beyond the expected set are reset, half port-forward
pairs expire, a bad resize message ends the resizes and not the session."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from criproxy.streaming import spdyforward
from tests.harness.criproxy import CriproxyProcess
from tests.integration.containers.conftest import Pod
from tests.integration.streaming import spdyclient
from tests.integration.streaming.test_exec import SLEEPER, exec_url
from tests.integration.streaming.test_portforward import pf_url
from tests.integration.streaming.test_spdy import _rss_kib

EXTRA = 200


@pytest.fixture
def running(pod: Pod) -> str:
    return pod.run(command=SLEEPER)


async def test_extra_streams_on_exec_are_reset_and_cost_little(pod: Pod, running: str,
                                                              criproxy: CriproxyProcess) -> None:
    assert criproxy.pid is not None
    c = await spdyclient.connect(exec_url(pod, running, "sh", "-c", "read x; echo got $x", stdin=True))
    try:
        err = await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"})
        out = await c.open({"streamType": "stdout"})
        serr = await c.open({"streamType": "stderr"})
        assert not any(s.reset for s in (err, sin, out, serr))
        before = _rss_kib(criproxy.pid)
        padding = "p" * 8192                              # each would hold its headers if it were kept
        extra = [await c.open({"streamType": kind, "padding": padding})
                 for kind in ("stdout", "stdin", "bogus", "error") * (EXTRA // 4)]
        with contextlib.suppress(TimeoutError):         # the RSTs arrive after the SYNs were sent
            await asyncio.wait_for(asyncio.gather(*(s.fin.wait() for s in extra)), 20)
        grown = _rss_kib(criproxy.pid) - before
        assert all(s.reset for s in extra), f"{sum(not s.reset for s in extra)} extra streams were not reset"
        assert grown < 16 * 1024, f"criproxy grew {grown} KiB for {EXTRA} extra streams"
        await sin.write(b"hello\n", fin=True)             # the session itself is unharmed
        assert await out.read_all() == b"got hello\n"
        assert json.loads(await err.read_all())["status"] == "Success"
    finally:
        await c.close()


async def test_deeply_nested_resize_resets_the_resize_stream_only(pod: Pod, running: str) -> None:
    c = await spdyclient.connect(exec_url(pod, running, "sh", "-c", "read x; echo got $x", stdin=True, tty=True))
    try:
        err = await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"})
        out = await c.open({"streamType": "stdout"})
        resize = await c.open({"streamType": "resize"})
        await resize.write(b"[" * 100_000)
        await asyncio.wait_for(resize.fin.wait(), 20)
        assert resize.reset
        await sin.write(b"fine\r")
        await out.wait_for(b"got fine")
        assert json.loads(await err.read_all())["status"] == "Success"
    finally:
        await c.close()


async def test_port_forward_half_pair_expires_and_duplicates_are_reset(pod: Pod) -> None:
    pod.run(command=SLEEPER)
    c = await spdyclient.connect(pf_url(pod), ("portforward.k8s.io",))
    try:
        err = await c.open({"streamType": "error", "port": "8080", "requestID": "7"})
        dup = await c.open({"streamType": "error", "port": "8080", "requestID": "7"})
        await asyncio.wait_for(dup.fin.wait(), 10)      # the RST arrives after open() has sent SYN
        assert not err.reset and dup.reset
        other = await c.open({"streamType": "bogus", "port": "8080", "requestID": "8"})
        await asyncio.wait_for(other.fin.wait(), 10)
        assert other.reset
        await asyncio.wait_for(err.fin.wait(), spdyforward.PAIR_TIMEOUT + 20)
        assert b"timed out waiting for streams" in err.data and err.reset
    finally:
        await c.close()


async def test_client_sending_faster_than_the_process_reads_is_held_back(pod: Pod, running: str,
                                                                       criproxy: CriproxyProcess) -> None:
    """16 MiB data frames to the stdin of a process that never reads it: criproxy reads each frame in
    pieces and stops reading the connection once its queues are full, so its memory stays flat."""
    assert criproxy.pid is not None
    c = await spdyclient.connect(exec_url(pod, running, "sleep", "60", stdin=True))
    try:
        await c.open({"streamType": "error"})
        sin = await c.open({"streamType": "stdin"})
        await c.open({"streamType": "stdout"})
        await c.open({"streamType": "stderr"})
        await asyncio.sleep(0.5)
        before = _rss_kib(criproxy.pid)
        frame = b"z" * ((1 << 24) - 1)
        with pytest.raises(TimeoutError):               # held back: the client's writes stop draining
            for _ in range(4):
                await asyncio.wait_for(sin.write(frame), 10)
        await asyncio.sleep(1)
        grown = _rss_kib(criproxy.pid) - before
        assert grown < 8 * 1024, f"criproxy grew {grown} KiB holding a client's unread stdin"
    finally:
        c.w.transport.abort()                           # unsent data would keep a graceful close waiting
        await c.close()
