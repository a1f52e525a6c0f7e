"""Remote command and port-forward over SPDY/3.1, the transport older kubelets, crictl and kubectl use.

The client upgrades with ``Upgrade: SPDY/3.1`` and lists the protocols it speaks in repeated
``X-Stream-Protocol-Version`` headers; we answer 101 with the first of them we serve (the client's
order, as Go's ``httpstream.Handshake``). Then the client opens one SPDY stream per purpose, named by
its ``streamType`` header: ``error``, ``stdin``, ``stdout``, ``stderr``, ``resize`` for remote
command; a ``data`` + ``error`` pair per forwarded connection (with ``port`` and ``requestID``
headers) for port-forward. Every stream is answered with SYN_REPLY at once (the client waits for it
before sending), and remote command starts when all the streams the stored request implies exist,
as in kubelet (which gives the client 30 s).

What one connection may cost is bounded, whatever the client sends: a stream is admitted only if
the session wants it (remote command: each expected type once, nothing after; port-forward: ``data``
and ``error`` streams, one of each per request ID) and fewer than MAX_STREAMS are open — any other
SYN_STREAM is answered with RST_STREAM and leaves nothing behind; half a port-forward pair is reset
after PAIR_TIMEOUT; the bytes received and not yet consumed, over all streams, stay under
CONNECTION_BUDGET (beyond it the connection is not read until a consumer catches up); a data frame
is read in CHUNK pieces and a control frame may not exceed the header-block limit.

This module is the connection (frames in ``spdyframes.py``); the upgrade is ``spdyupgrade.py``, the two
uses ``spdyexec.py`` (remote command) and ``spdyforward.py`` (port-forward).

The connection is taken over from aiohttp after the 101: incoming bytes go to our own reader instead
of aiohttp's HTTP parser (the way aiohttp's own WebSocket response does it), outgoing frames go
through the response's writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from criproxy.streaming import protocol as p
from criproxy.streaming import spdyframes as f
from criproxy.streaming.idle import Idle

log = logging.getLogger("criproxy.streaming")
CHUNK = 32 * 1024
MAX_STREAMS = 128                   # open streams per connection
CONNECTION_BUDGET = 4 * 1024 * 1024     # received, not yet consumed, over all streams of a connection
QUEUE_ITEMS = 64
Admit = Callable[["SpdyStream"], int]   # 0 = accept, else the RST_STREAM status to refuse with


class _Incoming(asyncio.Queue[bytes | None]):
    """A stream's received data, counted against its connection's byte budget until consumed."""

    def __init__(self, conn: SpdyConnection) -> None:
        super().__init__(QUEUE_ITEMS)
        self.conn = conn

    def _put(self, item: bytes | None) -> None:
        super()._put(item)
        if item:
            self.conn.buffered += len(item)

    def _get(self) -> bytes | None:
        item: bytes | None = super()._get()
        if item:
            self.conn.consumed(len(item))
        return item


class SpdyStream:
    """One stream the client opened: its headers, what it sent us, our way back."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: dict[str, str]) -> None:
        self.conn, self.id, self.headers = conn, stream_id, headers
        self.incoming: asyncio.Queue[bytes | None] = _Incoming(conn)
        self.discard = False            # nobody reads this stream: drop what arrives
        self.remote_closed = self.local_closed = False

    @property
    def type(self) -> str:
        return self.headers.get("streamtype", "")

    async def write(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            if self.local_closed:
                return
            await self.conn.send(f.data_frame(self.id, data[i:i + CHUNK]))

    async def close(self) -> None:
        """FIN from our side (the client's reader sees EOF)."""
        if not self.local_closed:
            self.local_closed = True
            await self.conn.send(f.data_frame(self.id, b"", fin=True))

    async def received(self, data: bytes) -> None:
        """Queue what the client sent in CHUNK pieces, so the queue's 64 items are 2 MiB at most
        (a SPDY frame may carry 16 MiB)."""
        for i in range(0, len(data), CHUNK):
            if self.discard or self.remote_closed:
                return
            await self.incoming.put(data[i:i + CHUNK])

    async def remote_fin(self) -> None:
        """The client's FIN: EOF after everything it sent before (so this may wait for room)."""
        if self.discard:                    # nobody reads it: do not wait for room
            self.remote_end()
        elif not self.remote_closed:
            self.remote_closed = True
            await self.incoming.put(None)

    def remote_end(self) -> None:
        """The stream or connection broke: EOF at once, never blocking (queued data nobody will
        wait for may be dropped)."""
        if self.remote_closed:
            return
        self.remote_closed = True
        p.put_eof(self.incoming)


class SpdyConnection:
    """The server side of one SPDY/3.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, resp: web.StreamResponse, idle: Idle,
                 transport: asyncio.BaseTransport | None = None) -> None:
        self.reader, self.resp, self.idle, self.transport = reader, resp, idle, transport
        self.codec = f.Codec()
        self.streams: dict[int, SpdyStream] = {}
        self.new_streams: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.last_id = 0
        self._goaway_sent = False
        self.admit: Admit = lambda _stream: 0
        self.buffered = 0
        self._room = asyncio.Event()
        self._room.set()

    def consumed(self, n: int) -> None:
        self.buffered -= n
        if self.buffered < CONNECTION_BUDGET:
            self._room.set()

    def forget(self, stream: SpdyStream) -> None:
        """A stream nobody will read any more: drop it and what it still holds from the budget."""
        self.streams.pop(stream.id, None)
        stream.local_closed = stream.remote_closed = True
        q = stream.incoming
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)                  # EOF for a reader still waiting (the queue is empty now)

    async def reset(self, stream: SpdyStream, status: int = f.RST_CANCEL) -> None:
        self.forget(stream)
        await self.send(f.rst_stream(stream.id, status))

    async def send(self, frame: bytes) -> None:
        if self.closed.is_set():
            return
        self.idle.touch()
        try:
            await self.resp.write(frame)
        except (ConnectionError, RuntimeError):
            self._lost()

    async def serve(self) -> None:
        """Read frames until the client closes the connection or breaks the protocol."""
        try:
            while True:
                if self.buffered >= CONNECTION_BUDGET:      # consumers are behind: stop reading
                    self._room.clear()
                    await self._room.wait()
                control, kind, flags, length = f.parse_head(await self.reader.readexactly(8))
                self.idle.touch()
                if control:
                    if length > f.MAX_CONTROL_FRAME:
                        raise f.ProtocolError(f"control frame of {length} bytes")
                    payload = await self.reader.readexactly(length) if length else b""
                    await self._control(self.codec.control(kind, flags, payload))
                    continue
                # Data in CHUNK pieces: a 16 MiB frame never sits in memory whole.
                while length > CHUNK:
                    await self._data(kind, 0, await self.reader.readexactly(CHUNK))
                    length -= CHUNK
                await self._data(kind, flags, await self.reader.readexactly(length) if length else b"")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except f.ProtocolError as e:
            log.info("SPDY client broke the protocol: %s", e)
            await self.send(f.goaway(self.last_id, 1))
        finally:
            self._lost()

    async def _control(self, frame: f.Frame) -> None:
        if frame.kind == f.SYN_STREAM:
            await self._open(frame)
        elif frame.kind == f.RST_STREAM:
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                self.forget(stream)
        elif frame.kind == f.PING and frame.value % 2 == 1:      # client pings are odd: echo
            await self.send(f.ping(frame.value))
        elif frame.kind == f.HEADERS and frame.fin:
            await self._data(frame.stream_id, f.FLAG_FIN, b"")

    async def _open(self, frame: f.Frame) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self.last_id or self._goaway_sent:
            await self.send(f.rst_stream(frame.stream_id, f.RST_PROTOCOL_ERROR if not self._goaway_sent
                                         else f.RST_REFUSED_STREAM))
            return
        self.last_id = frame.stream_id
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        refuse = f.RST_REFUSED_STREAM if len(self.streams) >= MAX_STREAMS else self.admit(stream)
        if refuse:
            await self.send(f.rst_stream(frame.stream_id, refuse))
            return
        self.streams[stream.id] = stream
        await self.send(self.codec.syn_reply(stream.id))
        if frame.fin:
            stream.remote_end()
        self.new_streams.put_nowait(stream)

    async def _data(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        await stream.received(payload)
        if flags & f.FLAG_FIN:
            await stream.remote_fin()

    async def close_when_idle(self) -> None:
        await self.idle.expired()
        log.info("closing an idle SPDY streaming session (%.0fs without traffic)", self.idle.timeout)
        self._lost()
        if self.transport is not None:      # the client may never hang up by itself
            self.transport.close()

    def _lost(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for stream in self.streams.values():
            stream.local_closed = True
            stream.remote_end()
        self.new_streams.put_nowait(None)

    async def goaway(self) -> None:
        """No more streams: tell the client, so it closes the connection once it has read everything."""
        if not self._goaway_sent:
            await self.send(f.goaway(self.last_id))
            self._goaway_sent = True
