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

The connection is taken over from aiohttp after the 101: incoming bytes go to our own reader instead
of aiohttp's HTTP parser (the way aiohttp's own WebSocket response does it), outgoing frames go
through the response's writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from aiohttp import web

from criproxy.app import App
from criproxy.streaming import protocol as p
from criproxy.streaming import spdyframes as f
from criproxy.streaming.idle import Idle
from criproxy.streaming.portforward import PortStream, forward_port
from criproxy.streaming.streams import Options, Streams

log = logging.getLogger("criproxy.streaming")
CHUNK = 32 * 1024
STREAM_CREATION_TIMEOUT = 30.0
PAIR_TIMEOUT = 30.0                 # kubelet's wait for the other half of a port-forward pair
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


class _Feed:
    """Stands in for aiohttp's parser after the upgrade: raw bytes into our StreamReader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


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


# -- upgrade ------------------------------------------------------------------------------------------
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


async def _session(request: web.Request, supported: tuple[str, ...], idle_timeout: float,
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


# -- remote command -----------------------------------------------------------------------------------
class SpdyStreams(Streams):
    """Streams over SPDY: one SPDY stream per channel."""

    def __init__(self, conn: SpdyConnection, opts: Options, dialect: p.Dialect, by_type: dict[str, SpdyStream]):
        super().__init__(opts)
        self.conn, self.dialect, self.by_type = conn, dialect, by_type
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch()))
        if "stdin" in self.by_type:
            self._tasks.append(loop.create_task(self._stdin(self.by_type["stdin"])))
        if "resize" in self.by_type:
            self._tasks.append(loop.create_task(self._resize(self.by_type["resize"])))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self) -> None:
        await self.conn.closed.wait()
        self.lost()

    async def _stdin(self, stream: SpdyStream) -> None:
        while (data := await stream.incoming.get()) is not None:
            await self.feed_stdin(data)
        await self.end_stdin()

    async def _resize(self, stream: SpdyStream) -> None:
        decoder = p.ResizeDecoder()
        try:
            while (data := await stream.incoming.get()) is not None:
                for size in decoder.feed(data):
                    self.feed_resize(size)
        except p.ProtocolError as e:        # as kubelet: no more resizes, the session goes on
            log.info("SPDY client sent a bad resize message (%s); resetting its resize stream", e)
            await self.conn.reset(stream, f.RST_PROTOCOL_ERROR)

    async def write(self, channel: int, data: bytes) -> None:
        stream = self.by_type.get("stdout" if channel == p.STDOUT else "stderr")
        if stream is not None:
            await stream.write(data)

    async def finish(self, status: dict[str, Any]) -> None:
        for name in ("stdout", "stderr"):
            if name in self.by_type:
                await self.by_type[name].close()
        err = self.by_type.get("error")
        if err is not None:
            data = p.encode_status(status, self.dialect)
            if data is not None:
                await err.write(data)
            await err.close()


def expected_streams(opts: Options, dialect: p.Dialect) -> set[str]:
    """The stream types kubelet waits for: error always, the requested stdio, resize for a tty (v3+)."""
    names = {"error"}
    names |= {n for n, on in (("stdin", opts.stdin), ("stdout", opts.stdout), ("stderr", opts.stderr)) if on}
    if opts.tty and dialect.version >= 3:
        names.add("resize")
    return names


class Expect:
    """Admits each expected stream type once; anything else — a duplicate, an unknown type, any
    stream after the expected set — is refused (RST_STREAM) and costs nothing."""

    def __init__(self, wanted: set[str]) -> None:
        self.missing = set(wanted)

    def __call__(self, stream: SpdyStream) -> int:
        if stream.type in self.missing:
            self.missing.discard(stream.type)
            return 0
        return f.RST_REFUSED_STREAM


async def _collect(conn: SpdyConnection, wanted: set[str]) -> dict[str, SpdyStream]:
    by_type: dict[str, SpdyStream] = {}
    while not wanted <= by_type.keys():
        stream = await conn.new_streams.get()
        if stream is None:
            raise ConnectionError("the client went away while creating streams")
        by_type[stream.type] = stream
    for name in ("error", "stdout", "stderr"):
        if name in by_type:
            by_type[name].discard = True        # the client does not write on these
    return by_type


async def serve_remote_command(request: web.Request, opts: Options, run: Callable[[Streams], Awaitable[None]],
                               idle_timeout: float) -> web.StreamResponse:
    async def body(conn: SpdyConnection, chosen: str) -> None:
        dialect = p.dialect(chosen)
        wanted = expected_streams(opts, dialect)
        conn.admit = Expect(wanted)         # set before the first await: no frame has been read yet
        try:
            by_type = await asyncio.wait_for(_collect(conn, wanted), STREAM_CREATION_TIMEOUT)
        except (TimeoutError, ConnectionError) as e:
            log.info("SPDY remote command: streams not created: %s", e or "timed out")
            return
        streams = SpdyStreams(conn, opts, dialect, by_type)
        streams.start()
        try:
            await run(streams)
        finally:
            await streams.stop()

    return await _session(request, p.SPDY_REMOTECOMMAND, idle_timeout, body)


# -- port-forward -------------------------------------------------------------------------------------
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

    return await _session(request, p.SPDY_PORTFORWARD, idle_timeout, body)


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
