"""ttrpc, containerd's small RPC protocol, over an asyncio byte stream: unary calls only.

NRI talks ttrpc, not gRPC, so criproxy carries its own implementation. A message is a 10-byte header
(data length and stream id as big-endian uint32, a type byte, a flags byte) and at most 4 MiB of data.
A request's data is a ``ttrpc.Request`` envelope (service, method, encoded input, remaining deadline in
nanoseconds, metadata), a response's a ``ttrpc.Response`` (a ``google.rpc.Status`` when it failed, the
encoded output). The caller picks odd, increasing stream ids; the server answers on the same id and may
answer out of order, so replies are matched by id. NRI never streams, so data frames (type 3) are
ignored. docs/nri.md describes the wire with a trace.

The byte stream is a :class:`Channel`: a plain unix socket (:class:`StreamChannel`) or one logical
connection of NRI's multiplexed trunk (criproxy.nri.mux). Everything is bounded: a message longer than
the limit is skipped without being buffered and answered with RESOURCE_EXHAUSTED, a server runs at most
``max_concurrent`` handlers and stops reading while they are busy, a client has at most that many calls
in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from criproxy._gen.google.rpc import status_pb2
from criproxy._gen.ttrpc import request_pb2

log = logging.getLogger(__name__)

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MAX_DATA = 4 << 20
TYPE_REQUEST, TYPE_RESPONSE, TYPE_DATA = 1, 2, 3
FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, FLAG_NO_DATA = 1, 2, 4

# gRPC status codes, as ttrpc carries them in google.rpc.Status.code.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
FAILED_PRECONDITION = 9
RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 8, 12, 13, 14

M = TypeVar("M", bound=Message)


class TtrpcError(Exception):
    """A call failed with a status code (from the peer, or local: timeout, closed connection)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ttrpc status {code}: {message}")
        self.code, self.message = code, message


class Channel(Protocol):
    """One ttrpc connection's byte stream."""

    async def read(self) -> bytes:
        """The next chunk of bytes; ``b""`` at end of stream."""

    async def write_message(self, message: bytes) -> None:
        """Send one complete ttrpc message (header + data)."""

    def close(self) -> None:
        """Close this connection (further reads see end of stream)."""


class StreamChannel:
    """A :class:`Channel` over an asyncio stream pair (a unix socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()

    async def read(self) -> bytes:
        return await self._reader.read(64 * 1024)

    async def write_message(self, message: bytes) -> None:
        async with self._lock:
            self._writer.write(message)
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


def encode_message(stream_id: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    """Header + data; a message over the limit is refused as a Go sender does."""
    if len(data) > MAX_DATA:
        raise TtrpcError(RESOURCE_EXHAUSTED, f"message length {len(data)} exceeds maximum {MAX_DATA}")
    return HEADER.pack(len(data), stream_id, mtype, flags) + data


@dataclass(frozen=True)
class Frame:
    """One decoded message; ``data`` is None when it was over the limit and skipped."""

    stream_id: int
    mtype: int
    flags: int
    data: bytes | None


class FrameDecoder:
    """Splits a byte stream into :class:`Frame` s. Buffers at most one message of at most MAX_DATA
    bytes; the body of an oversized message is counted off and dropped, never held."""

    def __init__(self, max_data: int = MAX_DATA) -> None:
        self._buf = bytearray()
        self._skip = 0
        self._max = max_data

    def feed(self, chunk: bytes) -> list[Frame]:
        out: list[Frame] = []
        if self._skip:
            dropped = min(self._skip, len(chunk))
            self._skip -= dropped
            chunk = chunk[dropped:]
        self._buf += chunk
        while len(self._buf) >= HEADER_SIZE:
            length, sid, mtype, flags = HEADER.unpack_from(self._buf)
            if length > self._max:
                out.append(Frame(sid, mtype, flags, None))
                available = len(self._buf) - HEADER_SIZE
                if available >= length:
                    del self._buf[:HEADER_SIZE + length]
                    continue
                self._skip = length - available
                self._buf.clear()
                break
            if len(self._buf) < HEADER_SIZE + length:
                break
            out.append(Frame(sid, mtype, flags, bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])))
            del self._buf[:HEADER_SIZE + length]
        return out


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


class Client:
    """Unary ttrpc calls over one channel. :meth:`start` runs the reply reader; :meth:`close` fails
    every call in flight with UNAVAILABLE."""

    def __init__(self, channel: Channel, *, max_in_flight: int = 64) -> None:
        self._channel = channel
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[request_pb2.Response]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(), name="ttrpc-client")

    async def call(self, service: str, method: str, request: Message, response_type: type[M], *,
                   timeout: float | None, metadata: Mapping[str, Sequence[str]] | None = None) -> M:
        """Send ``request`` and decode the reply as ``response_type``; a failure status, a timeout or a
        closed connection raises :class:`TtrpcError`."""
        if self._closed:
            raise TtrpcError(UNAVAILABLE, "ttrpc: closed")
        envelope = request_pb2.Request(service=service, method=method, payload=request.SerializeToString(),
                                       timeout_nano=int(timeout * 1e9) if timeout else 0)
        for key, values in (metadata or {}).items():
            envelope.metadata.extend(request_pb2.KeyValue(key=key.lower(), value=v) for v in values)
        async with self._slots:
            sid = self._next_id
            self._next_id += 2
            fut: asyncio.Future[request_pb2.Response] = asyncio.get_running_loop().create_future()
            self._pending[sid] = fut
            try:
                await self._channel.write_message(encode_message(sid, TYPE_REQUEST, envelope.SerializeToString()))
                try:
                    reply = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    raise TtrpcError(DEADLINE_EXCEEDED, f"{service}/{method}: deadline exceeded") from None
            except (ConnectionError, OSError) as exc:
                raise TtrpcError(UNAVAILABLE, f"ttrpc: {exc}") from exc
            finally:
                self._pending.pop(sid, None)
        if reply.HasField("status") and reply.status.code != OK:
            raise TtrpcError(reply.status.code, reply.status.message)
        out = response_type()
        try:
            out.ParseFromString(reply.payload)
        except DecodeError as exc:
            raise TtrpcError(INTERNAL, f"{service}/{method}: undecodable reply: {exc}") from exc
        return out

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while chunk := await self._channel.read():
                for frame in decoder.feed(chunk):
                    fut = self._pending.get(frame.stream_id)
                    if frame.mtype != TYPE_RESPONSE or fut is None or fut.done():
                        continue
                    if frame.data is None:
                        fut.set_exception(TtrpcError(RESOURCE_EXHAUSTED, "ttrpc: reply over the size limit"))
                        continue
                    reply = request_pb2.Response()
                    try:
                        reply.ParseFromString(frame.data)
                    except DecodeError:
                        fut.set_exception(TtrpcError(INTERNAL, "ttrpc: undecodable response envelope"))
                        continue
                    fut.set_result(reply)
        except (ConnectionError, OSError) as exc:
            log.debug("ttrpc client read ended: %s", exc)
        finally:
            self._shut()

    def _shut(self) -> None:
        self._closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TtrpcError(UNAVAILABLE, "ttrpc: connection closed"))
        self.closed.set()

    async def close(self) -> None:
        self._channel.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._shut()


Handler = Callable[[Message], Awaitable[Message]]


@dataclass(frozen=True)
class Method:
    """One unary method of a service: the input type to decode and the handler producing the output."""

    request_type: type[Message]
    handler: Handler


Services = Mapping[str, Mapping[str, Method]]


class Server:
    """Serves ``services`` (service name -> method name -> :class:`Method`) on one channel. Handlers run
    concurrently (at most ``max_concurrent``); each gets the caller's deadline when one was sent."""

    def __init__(self, channel: Channel, services: Services, *, max_concurrent: int = 16) -> None:
        self._channel, self._services = channel, services
        self._slots = asyncio.Semaphore(max_concurrent)
        self._last_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(), name="ttrpc-server")

    async def _reply(self, sid: int, status: status_pb2.Status | None, payload: bytes = b"") -> None:
        resp = request_pb2.Response(payload=payload)
        if status is not None:
            resp.status.CopyFrom(status)
        try:
            data = resp.SerializeToString()
            if len(data) > MAX_DATA:
                data = request_pb2.Response(status=_status(RESOURCE_EXHAUSTED, "reply over the size limit")
                                            ).SerializeToString()
            await self._channel.write_message(encode_message(sid, TYPE_RESPONSE, data))
        except (ConnectionError, OSError) as exc:
            log.debug("ttrpc server could not reply on stream %d: %s", sid, exc)

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while chunk := await self._channel.read():
                for frame in decoder.feed(chunk):
                    await self._dispatch(frame)
        except (ConnectionError, OSError) as exc:
            log.debug("ttrpc server read ended: %s", exc)
        finally:
            self.closed.set()

    async def _dispatch(self, frame: Frame) -> None:
        sid = frame.stream_id
        if frame.mtype != TYPE_REQUEST:
            return
        if frame.data is None:
            await self._reply(sid, _status(RESOURCE_EXHAUSTED, "request over the size limit"))
            return
        if sid % 2 == 0 or sid <= self._last_id:
            await self._reply(sid, _status(INVALID_ARGUMENT, f"stream id {sid} is not odd and increasing"))
            return
        self._last_id = sid
        envelope = request_pb2.Request()
        try:
            envelope.ParseFromString(frame.data)
        except DecodeError:
            await self._reply(sid, _status(INVALID_ARGUMENT, "undecodable request"))
            return
        method = self._services.get(envelope.service, {}).get(envelope.method)
        if method is None:
            await self._reply(sid, _status(UNIMPLEMENTED, f"{envelope.service}/{envelope.method} not implemented"))
            return
        await self._slots.acquire()  # back-pressure: no more reads while every slot is busy
        task = asyncio.get_running_loop().create_task(self._handle(sid, envelope, method))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, sid: int, envelope: request_pb2.Request, method: Method) -> None:
        try:
            request = method.request_type()
            try:
                request.ParseFromString(envelope.payload)
            except DecodeError:
                await self._reply(sid, _status(INVALID_ARGUMENT, "undecodable request payload"))
                return
            timeout = envelope.timeout_nano / 1e9 if envelope.timeout_nano > 0 else None
            try:
                result = await asyncio.wait_for(method.handler(request), timeout)
            except TtrpcError as exc:
                await self._reply(sid, _status(exc.code, exc.message))
            except TimeoutError:
                await self._reply(sid, _status(DEADLINE_EXCEEDED, "deadline exceeded"))
            except Exception as exc:  # a handler bug becomes UNKNOWN for the caller, as in Go ttrpc
                log.warning("ttrpc handler %s/%s failed: %s", envelope.service, envelope.method, exc)
                await self._reply(sid, _status(UNKNOWN, str(exc)))
            else:
                await self._reply(sid, None, result.SerializeToString())
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._channel.close()
        for task in [self._reader, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._reader, *self._tasks]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.closed.set()
