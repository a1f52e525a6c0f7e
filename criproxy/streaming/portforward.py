"""Port-forward: bytes between a client stream and ``localhost:<port>`` inside the pod's network namespace.

One forwarded connection per (client stream, port), as in kubelet and the CRI plugin: connect inside
the pod's netns (``netns.connect_local``), copy both ways. When the pod's side ends, the connection
is done; when the client's side ends first (its half-close), the pod gets EOF and up to a second to
finish answering (the CRI plugin's grace) before everything is closed. An
error (nothing listening, pod gone) goes to the port's error stream as text, which kubectl prints.

The WebSocket flavour lives here too: per requested port a data channel (2i) and an error channel
(2i+1), each opened with a frame carrying the port as uint16 little-endian.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.app import App
from criproxy.streaming import netns
from criproxy.streaming import protocol as p
from criproxy.streaming.idle import Idle

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("criproxy.streaming")
GRACE = 1.0
CHUNK = 32 * 1024


class PortStream:
    """One forwarded port as a transport presents it."""

    def __init__(self, port: int, send: Callable[[bytes], Awaitable[None]],
                 send_error: Callable[[bytes], Awaitable[None]]) -> None:
        self.port = port
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue(64)   # None: the client closed it
        self.send, self.send_error = send, send_error

    def close_incoming(self) -> None:
        """The client closed: EOF for the pod side, never blocking (data queued behind it is moot)."""
        p.put_eof(self.incoming)


def netns_of(app: App, sandbox_id: str) -> str:
    """The pod's netns path ("" for a host-network pod); NotFound/FailedPrecondition as the RPC says."""
    sb = app.sandboxes.get(sandbox_id)
    if not sb.ready:
        raise errors.FailedPrecondition(f"pod sandbox {sb.id} is not ready")
    if not sb.host_network and not sb.netns_path:
        raise errors.FailedPrecondition(f"pod sandbox {sb.id} has no network namespace")
    return "" if sb.host_network else sb.netns_path


async def forward_port(app: App, sandbox_id: str, stream: PortStream) -> None:
    """Serve one forwarded connection to its end; failures go to the port's error stream."""
    try:
        path = netns_of(app, sandbox_id)
        reader, writer = await netns.connect_local(path, stream.port)
    except (errors.CriError, OSError) as e:
        await stream.send_error(f"error forwarding port {stream.port} to pod {sandbox_id}, uid : {e}".encode())
        return
    try:
        await _copy_both(reader, writer, stream)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _copy_both(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: PortStream) -> None:
    loop = asyncio.get_running_loop()
    out = loop.create_task(_pod_to_client(reader, stream))
    into = loop.create_task(_client_to_pod(writer, stream))
    try:
        await asyncio.wait([out, into], return_when=asyncio.FIRST_COMPLETED)
        if not out.done():                   # the client finished sending: give the pod time to answer
            await asyncio.wait([out], timeout=GRACE)
    finally:
        for t in (out, into):
            t.cancel()
        await asyncio.gather(out, into, return_exceptions=True)


async def _pod_to_client(reader: asyncio.StreamReader, stream: PortStream) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(CHUNK):
            await stream.send(chunk)


async def _client_to_pod(writer: asyncio.StreamWriter, stream: PortStream) -> None:
    with contextlib.suppress(OSError):
        while (data := await stream.incoming.get()) is not None:
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


# -- WebSocket --------------------------------------------------------------------------------------
async def serve_ws(request: web.Request, app: App, sandbox_id: str, ports: list[int], idle_timeout: float) -> Any:
    """Port-forward over WebSocket: one connection per port, all on one socket."""
    from aiohttp import web

    offered = p.split_header(request.headers.get("Sec-WebSocket-Protocol", ""))
    if p.choose(offered, p.WS_PORTFORWARD) is None:
        return web.Response(status=400, text=f"requested protocol(s) are not supported: {offered}")
    ws = web.WebSocketResponse(protocols=p.WS_PORTFORWARD, compress=False, max_msg_size=p.MAX_MESSAGE)
    await ws.prepare(request)
    d, idle = p.dialect(ws.ws_protocol), Idle(idle_timeout)
    pairs = [_ws_port(ws, d, idle, i, port) for i, port in enumerate(ports)]
    for i, s in enumerate(pairs):
        await _ws_send(ws, d, idle, 2 * i, p.port_prefix(s.port))
        await _ws_send(ws, d, idle, 2 * i + 1, p.port_prefix(s.port))
    loop = asyncio.get_running_loop()
    helpers = [loop.create_task(_ws_read(ws, d, idle, pairs)), loop.create_task(_close_when_idle(ws, idle))]
    try:
        await asyncio.gather(*(forward_port(app, sandbox_id, s) for s in pairs))
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await ws.close()
    return ws


async def _close_when_idle(ws: web.WebSocketResponse, idle: Idle) -> None:
    await idle.expired()
    await ws.close()        # the reader ends, every port's client side reaches EOF


def _ws_port(ws: web.WebSocketResponse, d: p.Dialect, idle: Idle, index: int, port: int) -> PortStream:
    async def send(data: bytes) -> None:
        await _ws_send(ws, d, idle, 2 * index, data)

    async def send_error(data: bytes) -> None:
        await _ws_send(ws, d, idle, 2 * index + 1, data)

    return PortStream(port, send, send_error)


async def _ws_send(ws: web.WebSocketResponse, d: p.Dialect, idle: Idle, channel: int, data: bytes) -> None:
    idle.touch()
    frame = p.encode_frame(channel, data, d)
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)


async def _ws_read(ws: web.WebSocketResponse, d: p.Dialect, idle: Idle, pairs: list[PortStream]) -> None:
    from aiohttp import WSMsgType

    try:
        async for msg in ws:
            idle.touch()
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            frame = p.decode_frame(msg.data)
            if frame is None or frame[0] % 2 or frame[0] // 2 >= len(pairs) or not frame[1]:
                continue
            for i in range(0, len(frame[1]), CHUNK):     # in pieces: 64 queued items stay small
                await pairs[frame[0] // 2].incoming.put(frame[1][i:i + CHUNK])
    finally:
        for s in pairs:
            s.close_incoming()
