"""Remote command over WebSocket (``*.channel.k8s.io``): one binary message per frame, channel byte first.

As kubelet's server does, right after the upgrade an empty frame goes out on the lowest writable
channel (stdout, else stderr, else error): clients wait for it to know the streams are set up.
Only v5 clients can end stdin without closing the socket (``[255, 0]``); older ones end everything by
closing, which this side sees as the client being gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from criproxy.streaming import protocol as p
from criproxy.streaming.idle import Idle
from criproxy.streaming.streams import Options, Streams

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("criproxy.streaming")


class WsStreams(Streams):
    """Streams over an upgraded aiohttp WebSocket."""

    def __init__(self, ws: web.WebSocketResponse, opts: Options, idle: Idle) -> None:
        super().__init__(opts)
        self.ws, self.idle = ws, idle
        self.dialect = p.dialect(ws.ws_protocol)
        self._resize: p.ResizeDecoder | None = p.ResizeDecoder()

    async def send(self, channel: int, data: bytes) -> None:
        self.idle.touch()
        frame = p.encode_frame(channel, data, self.dialect)
        try:
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            else:
                await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError):      # closing or closed: the client is gone
            self.lost()

    async def write(self, channel: int, data: bytes) -> None:
        if not self.gone.is_set():
            await self.send(channel, data)

    async def hello(self) -> None:
        first = p.STDOUT if self.opts.stdout else p.STDERR if self.opts.stderr else p.ERROR
        await self.send(first, b"")

    async def finish(self, status: dict[str, Any]) -> None:
        data = p.encode_status(status, self.dialect)
        if data is not None and not self.gone.is_set():
            await self.send(p.ERROR, data)
        await self.ws.close()

    async def read_loop(self) -> None:
        """Demultiplex what the client sends until it closes."""
        from aiohttp import WSMsgType

        try:
            async for msg in self.ws:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    await self._frame(msg.data)
        finally:
            self.lost()

    async def _frame(self, message: bytes | str) -> None:
        self.idle.touch()
        frame = p.decode_frame(message)
        if frame is None:
            return
        channel, payload = frame
        if channel == p.CLOSE and self.dialect.close_frames:
            if payload[:1] == bytes((p.STDIN,)):
                await self.end_stdin()
        elif channel == p.STDIN:
            await self.feed_stdin(payload)
        elif channel == p.RESIZE and self.opts.tty and self._resize is not None:
            try:
                for size in self._resize.feed(payload):
                    self.feed_resize(size)
            except p.ProtocolError as e:        # as kubelet: no more resizes, the session goes on
                log.info("WebSocket client sent a bad resize message (%s); ignoring its resizes", e)
                self._resize = None


async def serve(request: web.Request, opts: Options, run: Callable[[Streams], Awaitable[None]],
                idle_timeout: float) -> Any:
    """Upgrade, run the session, close; unsupported subprotocols are refused before the upgrade."""
    from aiohttp import web

    offered = p.split_header(request.headers.get("Sec-WebSocket-Protocol", ""))
    if p.choose(offered, p.WS_REMOTECOMMAND) is None:
        return web.Response(status=400, text=f"requested protocol(s) are not supported: {offered}; "
                                             f"supports {list(p.WS_REMOTECOMMAND)}")
    ws = web.WebSocketResponse(protocols=p.WS_REMOTECOMMAND, compress=False, max_msg_size=p.MAX_MESSAGE)
    await ws.prepare(request)
    streams = WsStreams(ws, opts, Idle(idle_timeout))
    loop = asyncio.get_running_loop()
    helpers = [loop.create_task(streams.read_loop()), loop.create_task(_close_when_idle(streams))]
    try:
        await streams.hello()
        await run(streams)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await ws.close()
    return ws


async def _close_when_idle(streams: WsStreams) -> None:
    await streams.idle.expired()
    streams.lost()
    await streams.ws.close()
