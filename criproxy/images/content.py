"""Writing blobs into containerd's content store through Content.Write, as containerd's client does.

The protocol (CONTAINERD-FACTS §2): STAT with ref ``<kind>-<digest>``, total and expected digest;
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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import grpc.aio

from criproxy import errors, trace
from criproxy.app import App
from criproxy.containerd.client import map_error
from criproxy.images.registry import Descriptor
from criproxy.protos import content_pb

CHUNK = 1024 * 1024
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


class _Locked(Exception):
    """Another writer holds this ingest ref."""


async def _write_once(app: App, lease: str, ref: str, desc: Descriptor, labels: dict[str, str],
                      data: bytes | None, source: Source | None, progress: Progress | None) -> bool:
    started = time.perf_counter()
    call: Any = app.ctrd.content.Write.stream(lease=lease)
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
    except BaseException:
        code = "CANCELLED"
        call.cancel()
        raise
    finally:
        tr = trace.current.get()
        if tr is not None:
            tr.record("Content", "Write", started, code)


async def _send_and_commit(call: Any, desc: Descriptor, labels: dict[str, str], data: bytes | None,
                           source: Source | None, progress: Progress | None) -> None:
    """Send the data (if any is needed) and COMMIT, while a reader task consumes every reply.

    Replies are read concurrently so the pipeline never waits a round trip per chunk; when the
    server ends the stream with an error the reader holds that error, which is the one to report.
    """
    reader = asyncio.ensure_future(_read_all(call))
    try:
        if data or source is not None:
            await _send_data(call, desc, data, source, progress)
        await call.write(content_pb.WriteContentRequest(action=content_pb.COMMIT, total=desc.size,
                                                        offset=desc.size, expected=desc.digest, labels=labels))
        await call.done_writing()
    except BaseException:
        if reader.done() and isinstance(reader.exception(), grpc.aio.AioRpcError):
            raise reader.exception() from None  # type: ignore[misc]
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        raise
    await reader


async def _read_all(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


async def _send_data(call: Any, desc: Descriptor, data: bytes | None, source: Source | None,
                     progress: Progress | None) -> None:
    """Stream the bytes (from memory or the registry), checking digest and size as they pass."""
    if data:
        for off in range(0, len(data), CHUNK):
            await call.write(content_pb.WriteContentRequest(action=content_pb.WRITE, offset=off,
                                                            data=data[off:off + CHUNK]))
        sent, digest = len(data), "sha256:" + hashlib.sha256(data).hexdigest()
    else:
        assert source is not None
        sent, digest = await _stream_from(call, desc, source, progress)
    if sent != desc.size or digest != desc.digest:
        raise errors.FailedPrecondition(f"blob {desc.digest}: received {sent} bytes with digest {digest}, "
                                        f"expected {desc.size} bytes")


async def _stream_from(call: Any, desc: Descriptor, source: Source,
                       progress: Progress | None) -> tuple[int, str]:
    h = hashlib.sha256()
    off = 0
    buf = bytearray()
    if progress:
        progress.active += 1
        progress.last = time.monotonic()
    try:
        async with source() as stream:
            async for piece in _pieces(stream):
                h.update(piece)
                if progress:
                    progress.got(len(piece))
                buf += piece
                if len(buf) >= CHUNK or off + len(buf) >= desc.size:
                    await call.write(content_pb.WriteContentRequest(action=content_pb.WRITE, offset=off,
                                                                    data=bytes(buf)))
                    off += len(buf)
                    buf.clear()
                if off + len(buf) > desc.size:
                    break
            if buf:
                await call.write(content_pb.WriteContentRequest(action=content_pb.WRITE, offset=off,
                                                                data=bytes(buf)))
                off += len(buf)
    finally:
        if progress:
            progress.active -= 1
    return off, "sha256:" + h.hexdigest()


async def _pieces(stream: Any) -> AsyncIterator[bytes]:
    """Chunks from an aiohttp stream, with transfer failures turned into Unavailable."""
    import aiohttp

    while True:
        try:
            piece = await stream.read(CHUNK)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise errors.Unavailable(f"blob transfer failed: {e}") from None
        if not piece:
            return
        yield piece
