"""Upgrading an HTTP request to SPDY/3.1: the protocol the client and criproxy share, the 101
answer, taking the connection over from aiohttp, and one session's life on it (``spdy.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from criproxy.streaming import protocol as p
from criproxy.streaming.idle import Idle
from criproxy.streaming.spdy import SpdyConnection


class _Feed:
    """Stands in for aiohttp's parser after the upgrade: raw bytes into our StreamReader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


def negotiate(request: web.Request, supported: tuple[str, ...]) -> str:
    offered = [v for h in request.headers.getall("X-Stream-Protocol-Version", []) for v in p.split_header(h)]
    chosen = p.choose(offered, supported)
    if chosen is None:
        raise web.HTTPForbidden(
            text=f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                 f"server accepts {list(supported)}\n",
            headers=[("X-Accepted-Stream-Protocol-Versions", s) for s in supported])
    return chosen


async def upgrade(request: web.Request, chosen: str, idle_timeout: float) -> tuple[web.StreamResponse, SpdyConnection]:
    """Answer 101 and take the connection over from aiohttp's HTTP parser."""
    reader = asyncio.StreamReader(limit=256 * 1024)
    if request.transport is not None:
        reader.set_transport(request.transport)
    handler = cast(Any, request.protocol)
    handler.set_parser(_Feed(reader))
    handler.keep_alive(False)
    headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
    if chosen:
        headers["X-Stream-Protocol-Version"] = chosen
    resp = web.StreamResponse(status=101, headers=headers)
    await resp.prepare(request)
    return resp, SpdyConnection(reader, resp, Idle(idle_timeout), request.transport)


async def session(request: web.Request, supported: tuple[str, ...], idle_timeout: float,
                   body: Callable[[SpdyConnection, str], Awaitable[None]]) -> web.StreamResponse:
    chosen = negotiate(request, supported)
    resp, conn = await upgrade(request, chosen, idle_timeout)
    loop = asyncio.get_running_loop()
    helpers = [loop.create_task(conn.serve()), loop.create_task(conn.close_when_idle())]
    try:
        await body(conn, chosen)
        await conn.goaway()
        with contextlib.suppress(asyncio.TimeoutError):     # let the client read and hang up first
            await asyncio.wait_for(conn.closed.wait(), 5.0)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()          # the client did not hang up after GOAWAY
    return resp
