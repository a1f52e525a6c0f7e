"""Remote command (exec, attach) over a SPDY connection: the streams a request implies, each
admitted once, then the session (``spdyupgrade.py``, ``spdy.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from criproxy.streaming import protocol as p
from criproxy.streaming import spdyframes as f
from criproxy.streaming.spdy import SpdyConnection, SpdyStream
from criproxy.streaming.spdyupgrade import session
from criproxy.streaming.streams import Options, Streams

log = logging.getLogger("criproxy.streaming")


STREAM_CREATION_TIMEOUT = 30.0


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

    return await session(request, p.SPDY_REMOTECOMMAND, idle_timeout, body)
