"""NRI's connection multiplexer: two logical ttrpc connections over one plugin socket (the trunk).

A mux frame is an 8-byte header (connection id, payload length; big-endian uint32) and the payload.
Id 1 carries the Plugin service (the plugin serves, the runtime calls), id 2 the Runtime service (the
runtime serves, the plugin calls); id 0 is reserved. Nothing opens or closes an id: frames for an id
this side has not opened are dropped, closing the trunk ends every connection. The payloads of one id
form a byte stream, so a ttrpc message may span frames.

Writing copies Go's writer, because a Go peer reads each logical connection through a 4096-byte
buffer and fails on a mux frame larger than the buffer it is filling: a ttrpc message of at most 4096
bytes goes out as one frame, a longer one as exactly two (its first 4096 bytes, then the rest).
Reading is bounded: a frame longer than ``MAX_FRAME`` breaks the trunk, and each id queues at most
``QUEUE_FRAMES`` frames before the trunk reader waits for it to be consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from criproxy.nri import ttrpc

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")
PLUGIN_SERVICE_CONN = 1
RUNTIME_SERVICE_CONN = 2
GO_READ_BUFFER = 4096
MAX_FRAME = ttrpc.HEADER_SIZE + ttrpc.MAX_DATA + 64 * 1024
QUEUE_FRAMES = 256


class MuxError(Exception):
    """The trunk carried something that is not a mux frame stream."""


def split_for_go(message: bytes) -> list[bytes]:
    """The payloads of the mux frames a Go writer would send for one ttrpc message."""
    if len(message) <= GO_READ_BUFFER:
        return [message]
    return [message[:GO_READ_BUFFER], message[GO_READ_BUFFER:]]


class Conn:
    """One logical connection; a :class:`criproxy.nri.ttrpc.Channel`."""

    def __init__(self, mux: Mux, conn_id: int) -> None:
        self._mux, self.conn_id = mux, conn_id
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)
        self._eof = False

    async def read(self) -> bytes:
        if self._eof:
            return b""
        chunk = await self._queue.get()
        if not chunk:
            self._eof = True
        return chunk

    async def write_message(self, message: bytes) -> None:
        await self._mux.write(self.conn_id, split_for_go(message))

    def close(self) -> None:
        """Closing one id only stops reading it (the protocol has no per-id close); closing the trunk
        is :meth:`Mux.close`."""
        self._mux.forget(self.conn_id)
        self._deliver_eof()

    def _deliver_eof(self) -> None:
        if self._eof:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(b"")
            return
        # Full queue: drop one pending chunk so the end of stream is still seen.
        self._queue.get_nowait()
        self._queue.put_nowait(b"")


class Mux:
    """The trunk. :meth:`open` the ids to use, then :meth:`start` the reader."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._conns: dict[int, Conn] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def open(self, conn_id: int) -> Conn:
        if conn_id == 0:
            raise ValueError("mux connection id 0 is reserved")
        if conn_id in self._conns:
            raise ValueError(f"mux connection {conn_id} already open")
        conn = self._conns[conn_id] = Conn(self, conn_id)
        return conn

    def forget(self, conn_id: int) -> None:
        self._conns.pop(conn_id, None)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="nri-mux")

    async def write(self, conn_id: int, payloads: list[bytes]) -> None:
        """Send ``payloads`` as consecutive frames of ``conn_id`` (not interleaved with other writes)."""
        if self.closed.is_set():
            raise ConnectionResetError("nri mux: trunk closed")
        async with self._lock:
            for payload in payloads:
                self._writer.write(HEADER.pack(conn_id, len(payload)) + payload)
            await self._writer.drain()

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    head = await self._reader.readexactly(HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                conn_id, length = HEADER.unpack(head)
                if length > MAX_FRAME:
                    raise MuxError(f"mux frame of {length} bytes on connection {conn_id}")
                payload = await self._reader.readexactly(length) if length else b""
                conn = self._conns.get(conn_id)
                if conn is None or not payload:
                    continue  # an id nobody opened, as the Go reader does; empty frames carry nothing
                await conn._queue.put(payload)
        except (MuxError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            log.info("nri mux: trunk read ended: %s", exc)
        finally:
            self._shut()

    def _shut(self) -> None:
        self.closed.set()
        for conn in list(self._conns.values()):
            conn._deliver_eof()
        self._conns.clear()
        self._writer.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._shut()
