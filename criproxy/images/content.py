"""Writing blobs into containerd's content store through Content.Write, as containerd's client does.

The protocol (docs/images.md): STAT with ref ``<kind>-<digest>``, total and expected digest;
ALREADY_EXISTS means the blob is committed (and now also held by our lease); a locked ref means
another writer holds it, so we back off and retry. Data goes in WRITE messages of at most 1 MiB
with responses read by a concurrent reader, so the stream is pipelined and memory stays bounded;
the digest and size are checked as bytes pass, before COMMIT, which carries the labels.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import grpc.aio

from criproxy import errors, trace
from criproxy.app import App
from criproxy.containerd.client import map_error
from criproxy.images.descriptor import Descriptor
from criproxy.protos import content_pb

# containerd's Go client sends 1 MiB and caps at 8 MiB. Over gRPC bigger messages cost containerd
# less CPU per byte (measured here: ~100 MB/s at 1 MiB, ~120-150 at 4 MiB, ~180 at 8 MiB), while
# criproxy's peak memory per stream is ~5 chunks (measured growth during a 1 GiB layer: 20 MiB at
# 4 MiB, 40 MiB at 8 MiB). 4 MiB keeps a 1 GiB pull within the 32 MiB budget.
CHUNK = 4 * 1024 * 1024
# WRITE requests awaiting containerd's reply per stream (grpc.aio's write returns once queued).
WINDOW = 2
Source = Callable[[], AbstractAsyncContextManager[Any]]


class Progress:
    """Bytes received and layers finished for one pull; ``last`` moves whenever bytes arrive."""

    def __init__(self) -> None:
        self.bytes = 0
        self.total = 0
        self.layers_done = 0
        self.layers_total = 0
        self.active = 0
        self.last = time.monotonic()

    def got(self, n: int) -> None:
        self.bytes += n
        self.last = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds without bytes while a transfer is open (0 when nothing is being fetched)."""
        return time.monotonic() - self.last if self.active else 0.0

    def describe(self) -> str:
        return (f"{self.bytes / 1048576:.1f}/{self.total / 1048576:.1f} MiB, "
                f"{self.layers_done}/{self.layers_total} layers")


async def update_labels(app: App, digest: str, labels: dict[str, str]) -> None:
    """Set labels on committed content (mask ``labels.<key>`` each, so others stay)."""
    if not labels:
        return
    info = content_pb.Info(digest=digest, labels=labels)
    mask = [f"labels.{k}" for k in labels]
    from google.protobuf import field_mask_pb2

    await app.ctrd.content.Update(content_pb.UpdateRequest(info=info,
                                                           update_mask=field_mask_pb2.FieldMask(paths=mask)))


def _ref(kind: str, desc: Descriptor) -> str:
    name = dict(desc.annotations).get("org.opencontainers.image.ref.name")
    return f"{kind}-{name}@{desc.digest}" if name else f"{kind}-{desc.digest}"


async def write(app: App, lease: str, kind: str, desc: Descriptor, labels: dict[str, str],
                data: bytes | None = None, source: Source | None = None,
                progress: Progress | None = None) -> bool:
    """Make ``desc`` committed content under ``lease``; True if we wrote it, False if it existed.

    ``data`` is the whole blob when already in memory (manifests, configs); otherwise ``source()``
    opens the registry stream, only when containerd does not already have the blob.
    """
    if desc.size <= 0:
        raise errors.FailedPrecondition(f"refusing to write empty blob {desc.digest}")
    delay = 0.016
    while True:
        try:
            wrote = await _write_once(app, lease, _ref(kind, desc), desc, labels, data, source, progress)
        except _Locked:
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.048)
            continue
        if not wrote:
            await update_labels(app, desc.digest, labels)
        return wrote


def _serialize(request: Any) -> bytes:
    return request if isinstance(request, bytes) else bytes(request.SerializeToString())


def _write_call(app: App) -> Any:
    """Content.Write with a serializer that passes pre-encoded WRITE messages through untouched."""
    fn = app.images.content_write
    if fn is None or fn[0] is not app.ctrd.channel:
        fn = app.images.content_write = (app.ctrd.channel, app.ctrd.channel.stream_stream(
            "/containerd.services.content.v1.Content/Write", request_serializer=_serialize,
            response_deserializer=content_pb.WriteContentResponse.FromString))
    return fn[1]


class _Locked(Exception):
    """Another writer holds this ingest ref."""


async def _write_once(app: App, lease: str, ref: str, desc: Descriptor, labels: dict[str, str],
                      data: bytes | None, source: Source | None, progress: Progress | None) -> bool:
    started = time.perf_counter()
    # In-memory blobs (manifests, configs) are small: the default deadline; a layer gets the long one.
    timeout = app.ctrd.deadline if data is not None else app.ctrd.deadline_for("Content", "Write")
    call: Any = _write_call(app)(metadata=app.ctrd.metadata(lease), timeout=timeout)
    code = "OK"
    try:
        await call.write(content_pb.WriteContentRequest(action=content_pb.STAT, ref=ref, total=desc.size,
                                                        expected=desc.digest))
        stat = await call.read()
        if stat is grpc.aio.EOF:
            raise errors.Unavailable(f"containerd closed the content writer for {desc.digest}")
        await _send_and_commit(call, desc, labels, data if stat.offset != desc.size else b"",
                               source if stat.offset != desc.size else None, progress)
        return True
    except grpc.aio.AioRpcError as e:
        code = e.code().name
        if e.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False
        if e.code() == grpc.StatusCode.UNAVAILABLE and "locked" in (e.details() or ""):
            raise _Locked() from None
        raise map_error("Content", "Write", e) from None
    except BaseException as e:
        code = "CANCELLED" if isinstance(e, asyncio.CancelledError) else type(e).__name__
        call.cancel()
        raise
    finally:
        tr = trace.current.get()
        if tr is not None:
            tr.record("Content", "Write", started, code, {"ref": ref, "digest": desc.digest}, lease)


async def _send_and_commit(call: Any, desc: Descriptor, labels: dict[str, str], data: bytes | None,
                           source: Source | None, progress: Progress | None) -> None:
    """Send the data (if any is needed) and COMMIT, while a reader task consumes every reply.

    Replies are read concurrently so the pipeline never waits a round trip per chunk; when the
    server ends the stream with an error the reader holds that error, which is the one to report.
    """
    call = _Windowed(call)
    reader = asyncio.ensure_future(_read_all(call))
    try:
        if data or source is not None:
            await _send_data(call, desc, data, source, progress)
        await call.write(content_pb.WriteContentRequest(action=content_pb.COMMIT, total=desc.size,
                                                        offset=desc.size, expected=desc.digest, labels=labels))
        await call.done_writing()
    except BaseException:
        if reader.done() and not reader.cancelled() and isinstance(reader.exception(), grpc.aio.AioRpcError):
            raise reader.exception() from None  # type: ignore[misc]
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        raise
    await reader


class _Windowed:
    """A Content.Write call with at most WINDOW requests awaiting their reply.

    grpc.aio's ``write`` returns once the message is queued, not sent, so without a window a fast
    registry would queue chunks (and memory) faster than containerd takes them.
    """

    def __init__(self, call: Any) -> None:
        self._call = call
        self._window = asyncio.Semaphore(WINDOW)

    async def write(self, request: Any) -> None:
        await self._window.acquire()
        await self._call.write(request)

    async def read(self) -> Any:
        reply = await self._call.read()
        self._window.release()
        return reply

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def cancel(self) -> bool:
        return bool(self._call.cancel())


async def _read_all(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


async def _send_data(call: Any, desc: Descriptor, data: bytes | None, source: Source | None,
                     progress: Progress | None) -> None:
    """Stream the bytes (from memory or the registry), checking digest and size as they pass."""
    if data:
        for off in range(0, len(data), CHUNK):
            await call.write(encode_write(off, data[off:off + CHUNK]))
        sent, digest = len(data), "sha256:" + hashlib.sha256(data).hexdigest()
    else:
        assert source is not None
        sent, digest = await _stream_from(call, desc, source, progress)
    if sent != desc.size or digest != desc.digest:
        raise errors.FailedPrecondition(f"blob {desc.digest}: received {sent} bytes with digest {digest}, "
                                        f"expected {desc.size} bytes")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_write(offset: int, *parts: bytes) -> bytes:
    """A serialized ``WriteContentRequest{action: WRITE, offset, data}``, built without a message object.

    ``data`` is the concatenation of ``parts`` (the pieces as aiohttp delivered them), so each byte
    is copied once, straight into the message; a message object plus serialization would copy it
    twice more. Fields: 1 action (varint, WRITE = 1), 5 offset (varint), 6 data (length-delimited).
    """
    size = sum(len(p) for p in parts)
    return b"".join((b"\x08\x01\x28", _varint(offset), b"\x32", _varint(size), *parts))


async def _stream_from(call: Any, desc: Descriptor, source: Source,
                       progress: Progress | None) -> tuple[int, str]:
    """Registry bytes → WRITE messages of CHUNK bytes, hashed on the way.

    References to each chunk are dropped before the next read, so at most a few chunks are alive
    at once (what keeps criproxy's memory flat during a 1 GiB pull).
    """
    h = hashlib.sha256()
    off = 0
    if progress:
        progress.active += 1
        progress.last = time.monotonic()
    try:
        async with source() as stream:
            while off < desc.size:
                parts = await _read_parts(stream, min(CHUNK, desc.size - off), progress)
                if not parts:
                    break
                for part in parts:
                    h.update(part)
                message = encode_write(off, *parts)
                off += sum(len(part) for part in parts)
                del parts
                await call.write(message)
                del message
            if off == desc.size and await _read_parts(stream, 1, progress):
                off += 1  # the registry sent more than the descriptor says: fails the size check
    finally:
        if progress:
            progress.active -= 1
    return off, "sha256:" + h.hexdigest()


async def _read_parts(stream: Any, n: int, progress: Progress | None) -> list[bytes]:
    """Pieces adding up to ``n`` bytes (fewer only at the end of the body), counted as they arrive."""
    import aiohttp

    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            part = await stream.read(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
            if progress:
                progress.got(len(part))
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise errors.Unavailable(f"blob transfer failed: {e}") from None
    return parts
