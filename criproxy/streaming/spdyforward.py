"""Port-forward over a SPDY connection: a ``data`` + ``error`` stream pair per request ID, each pair
one forwarded connection into the pod's network namespace (``spdy.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from criproxy.app import App
from criproxy.streaming import protocol as p
from criproxy.streaming import spdyframes as f
from criproxy.streaming.portforward import PortStream, forward_port
from criproxy.streaming.spdy import SpdyConnection, SpdyStream
from criproxy.streaming.spdyupgrade import session

log = logging.getLogger("criproxy.streaming")


PAIR_TIMEOUT = 30.0                 # kubelet's wait for the other half of a port-forward pair


def request_id(stream: SpdyStream) -> str:
    """The pair a stream belongs to; old clients send no requestID, so kubelet's fallback applies
    (the error stream's own ID, the data stream's ID minus 2)."""
    rid = stream.headers.get("requestid", "")
    if rid:
        return rid
    return str(stream.id - 2 if stream.type == "data" else stream.id)


def admit_port_forward(stream: SpdyStream) -> int:
    return 0 if stream.type in ("data", "error") else f.RST_PROTOCOL_ERROR


class Pairs:
    """Port-forward streams waiting for the other half of their pair (same request ID).

    A second stream of a type the pair already has is reset; a pair still half after PAIR_TIMEOUT is
    given up: "timed out waiting for streams" on its error stream if it has one (kubelet's words),
    then its streams are reset and forgotten.
    """

    def __init__(self, conn: SpdyConnection, timeout: float = PAIR_TIMEOUT) -> None:
        self.conn, self.timeout = conn, timeout
        self.pending: dict[str, dict[str, SpdyStream]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def add(self, stream: SpdyStream) -> dict[str, SpdyStream] | None:
        """The complete pair once both halves are here, else None."""
        rid = request_id(stream)
        pair = self.pending.setdefault(rid, {})
        if stream.type in pair:
            await self.conn.reset(stream, f.RST_PROTOCOL_ERROR)
            return None
        pair[stream.type] = stream
        if len(pair) == 1:
            self.timers[rid] = asyncio.get_running_loop().call_later(self.timeout, self._expire, rid)
            return None
        del self.pending[rid]
        self.timers.pop(rid).cancel()
        return pair

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _expire(self, rid: str) -> None:
        self.timers.pop(rid, None)
        pair = self.pending.pop(rid, None)
        if pair:
            self.spawn(self._give_up(rid, pair))

    async def _give_up(self, rid: str, pair: dict[str, SpdyStream]) -> None:
        log.info("port-forward request %s: timed out waiting for streams", rid[:32])
        err = pair.get("error")
        if err is not None:
            await err.write(b"timed out waiting for streams")
        for stream in pair.values():
            await self.conn.reset(stream)

    async def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve_port_forward(request: web.Request, app: App, sandbox_id: str,
                             idle_timeout: float) -> web.StreamResponse:
    async def body(conn: SpdyConnection, chosen: str) -> None:
        conn.admit = admit_port_forward     # set before the first await: no frame has been read yet
        pairs = Pairs(conn)
        try:
            while (stream := await conn.new_streams.get()) is not None:
                pair = await pairs.add(stream)
                if pair is not None:
                    pairs.spawn(_forward_pair(app, sandbox_id, pair))
        finally:
            await pairs.close()

    return await session(request, p.SPDY_PORTFORWARD, idle_timeout, body)


async def _forward_pair(app: App, sandbox_id: str, pair: dict[str, SpdyStream]) -> None:
    data, err = pair["data"], pair["error"]
    err.discard = True
    text = data.headers.get("port", "")
    try:
        if not text.isdigit() or not 0 < int(text) < 65536:
            await err.write(f"invalid port {text!r}".encode())
            return
        stream = PortStream(int(text), data.write, err.write)
        stream.incoming = data.incoming
        await forward_port(app, sandbox_id, stream)
    finally:
        await data.close()
        await err.close()
        for done in (data, err):        # a long session forwards thousands of connections: forget them
            done.conn.forget(done)
