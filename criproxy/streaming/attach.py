"""Attach: join a running container's own stdio.

Output comes from the container's log pump (``ContainerIO.listeners``): every chunk the pump reads
is also handed to each attached client. The pump must never wait for a client, so each attachment has
its own queue with a byte budget; a client that falls that far behind loses output (counted and
logged) rather than stalling the container's log. Only output produced after attaching is seen, as
with the CRI plugin.

Stdin goes into the container's stdin FIFO, and only when the container was created with
``stdin``. At the client's stdin EOF a ``stdin_once`` container gets EOF too (CloseIO); any other
keeps its stdin open for the next attach (a tty one too, as in containerd: kubectl
ends a tty session by closing its stream). The session ends when the container exits (after the pump
has drained) or the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.protos import cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.streaming import protocol as p
from criproxy.streaming.exec import resize_loop, running_container
from criproxy.streaming.fifo import FifoWriter
from criproxy.streaming.streams import Streams

log = logging.getLogger("criproxy.streaming")
BUDGET = 4 * 1024 * 1024


class _Tap:
    """A log-pump listener feeding one client's queue within a byte budget."""

    def __init__(self, stdout: bool, stderr: bool) -> None:
        self.want = {b"stdout": p.STDOUT if stdout else None, b"stderr": p.STDERR if stderr else None}
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.queued = 0
        self.dropped = 0

    def __call__(self, stream: bytes, data: bytes) -> None:
        channel = self.want.get(stream)
        if channel is None:
            return
        if self.queued + len(data) > BUDGET:
            self.dropped += len(data)
            return
        self.queued += len(data)
        self.queue.put_nowait((channel, data))

    async def pump(self, streams: Streams) -> None:
        while True:
            channel, data = await self.queue.get()
            self.queued -= len(data)
            await streams.write(channel, data)

    async def flush(self, streams: Streams) -> None:
        while not self.queue.empty():
            channel, data = self.queue.get_nowait()
            self.queued -= len(data)
            await streams.write(channel, data)


async def run_attach(app: App, req: cri.AttachRequest, streams: Streams) -> None:
    """Serve one attach session to its end; the final status always reaches the client."""
    try:
        rec = running_container(app, req.container_id)
        if rec.handles.io is None:
            raise errors.FailedPrecondition(f"container {rec.id} has no stdio to attach to")
        await _attach(app, rec, streams)
        status = p.status_success()
    except errors.CriError as e:
        status = p.status_internal(f"error attaching to container: {e}")
    await streams.finish(status)


async def _attach(app: App, rec: ContainerRecord, streams: Streams) -> None:
    o = streams.opts
    tap = _Tap(o.stdout, o.stderr and not rec.config.tty)
    io = rec.handles.io
    if io is None:
        raise errors.FailedPrecondition(f"container {rec.id} has no stdio to attach to")
    io.listeners.append(tap)
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(tap.pump(streams))]
    if o.stdin and rec.config.stdin and io.stdin_fd >= 0:
        tasks.append(loop.create_task(_copy_in(app, rec, streams)))
    if o.tty and rec.config.tty:
        tasks.append(loop.create_task(resize_loop(app, rec.id, "", streams)))
    waits = [loop.create_task(rec.handles.exited.wait()), loop.create_task(streams.gone.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        with contextlib.suppress(ValueError):
            io.listeners.remove(tap)
        for t in tasks + waits:
            t.cancel()
        await asyncio.gather(*tasks, *waits, return_exceptions=True)
    await tap.flush(streams)
    if tap.dropped:
        log.info("attach to %s: client too slow, %d bytes of output dropped", rec.id[:12], tap.dropped)


async def _copy_in(app: App, rec: ContainerRecord, streams: Streams) -> None:
    """Client stdin into the container's stdin FIFO (through our own descriptor, closed at the end)."""
    io: Any = rec.handles.io
    writer = FifoWriter(os.dup(io.stdin_fd))
    try:
        while (data := await streams.stdin.get()) is not None:
            await writer.write(data)
    except OSError as e:
        log.debug("attach %s stdin: %s", rec.id[:12], e)
    finally:
        writer.close()
    if rec.config.stdin_once and not rec.config.tty:
        io.close_stdin()
        with contextlib.suppress(errors.CriError):
            await app.ctrd.tasks.CloseIO(tasks_pb.CloseIORequest(container_id=rec.id, stdin=True))
