"""A streamed exec: a new process in the container's task, wired to the client's streams.

The process is the container's OCI process with ``args`` replaced (as ExecSync and the CRI plugin
do), ``terminal`` set for a tty and ``TERM=xterm`` added when the image did not set TERM, so full-screen
programs work. Steps: FIFOs → Tasks.Exec → Tasks.Wait (before Start, so a quick exit is not missed)
→ Tasks.Start → copy streams until the process exits → let output drain briefly → final status →
Tasks.DeleteProcess. A client that goes away kills the process: nothing is left running that nobody
can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.io import exec as process
from criproxy.protos import cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.streaming import protocol as p
from criproxy.streaming.fifo import ExecIO
from criproxy.streaming.streams import Streams

log = logging.getLogger("criproxy.streaming")
DRAIN_AFTER_EXIT = 2.0
INITIAL_SIZE_WAIT = 0.25
COPY_CHUNK = 256 * 1024


def running_container(app: App, container_id: str) -> ContainerRecord:
    rec = app.containers.get(container_id)
    if rec.state != cri.CONTAINER_RUNNING:
        raise errors.FailedPrecondition(f"container {rec.id} is not running")
    return rec


async def run_exec(app: App, req: cri.ExecRequest, streams: Streams) -> None:
    """Serve one exec session to its end; the final status always reaches the client, before the
    process is deleted (the client need not wait for the cleanup)."""
    try:
        rec = running_container(app, req.container_id)
    except errors.CriError as e:
        await streams.finish(_internal(e))
        return
    o = streams.opts
    exec_id = os.urandom(16).hex()
    eio = ExecIO(app.config.state / "containers" / rec.id / "exec" / exec_id, o.stdin, o.tty)
    try:
        try:
            await eio.create()
            status = _status(list(req.cmd), await _run(app, rec, exec_id, list(req.cmd), eio, streams))
        except errors.CriError as e:
            status = _internal(e)
        finally:
            eio.remove()                    # our FIFO ends: nothing more can come from them
        await streams.finish(status)
    finally:
        await process.delete(app, rec.id, exec_id)


def _status(cmd: list[str], code: int | None) -> dict[str, Any]:
    if code is None:
        return p.status_internal("the client went away; the process was killed")
    return p.status_success() if code == 0 else p.status_exit_code(cmd, code)


def _internal(e: errors.CriError) -> dict[str, Any]:
    return p.status_internal(f"error executing command in container: {e}")


async def _start(app: App, rec: ContainerRecord, exec_id: str, cmd: list[str], eio: ExecIO,
                 streams: Streams) -> asyncio.Future[Any]:
    tty = streams.opts.tty
    proc = process.exec_process(rec, cmd, tty)
    size = await initial_size(streams) if tty else None
    if size is not None:                    # the terminal starts at the client's size, not 0x0
        proc["consoleSize"] = {"width": size[0], "height": size[1]}
    return await process.start(app, rec.id, exec_id, proc, stdin=eio.paths.get("stdin", ""),
                               stdout=eio.paths.get("stdout", ""), stderr=eio.paths.get("stderr", ""),
                               started=eio.release_holders)


async def initial_size(streams: Streams) -> tuple[int, int] | None:
    """The client's terminal size, waiting briefly for its first resize (kubectl sends one right after
    connecting): a full-screen program that reads its size at start would otherwise see 0x0."""
    size = None
    if streams.resizes.empty():
        with contextlib.suppress(TimeoutError):
            size = await asyncio.wait_for(streams.resizes.get(), INITIAL_SIZE_WAIT)
    while not streams.resizes.empty():      # the newest wins; older sizes are moot
        size = streams.resizes.get_nowait()
    return size


async def _run(app: App, rec: ContainerRecord, exec_id: str, cmd: list[str], eio: ExecIO,
               streams: Streams) -> int | None:
    """Exit code of the process, or None when the client left first (the process is killed)."""
    wait: asyncio.Future[Any] | None = None
    helpers: list[asyncio.Task[Any]] = []
    try:
        wait = await _start(app, rec, exec_id, cmd, eio, streams)
        helpers = _helpers(app, rec.id, exec_id, eio, streams)
        return await _until_exit(app, rec.id, exec_id, wait, helpers, streams)
    except asyncio.CancelledError:          # criproxy is stopping: leave no process behind
        if wait is None or not wait.done():
            await asyncio.shield(process.kill(app, rec.id, exec_id, wait))
        raise
    finally:
        if wait is not None:
            wait.cancel()
        for h in helpers:
            h.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


async def _until_exit(app: App, container_id: str, exec_id: str, wait: asyncio.Future[Any],
                      helpers: list[asyncio.Task[Any]], streams: Streams) -> int | None:
    gone = asyncio.ensure_future(streams.gone.wait())
    try:
        await asyncio.wait([wait, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not wait.done():
        await process.kill(app, container_id, exec_id, wait)
        return None
    copies = [h for h in helpers if h.get_name() == "copy"]
    if copies:
        await asyncio.wait(copies, timeout=DRAIN_AFTER_EXIT)
    return int(wait.result().exit_status)


def _helpers(app: App, container_id: str, exec_id: str, eio: ExecIO, streams: Streams) -> list[asyncio.Task[Any]]:
    loop = asyncio.get_running_loop()
    wanted = {"stdout": streams.opts.stdout, "stderr": streams.opts.stderr}
    tasks = [loop.create_task(_copy_out(reader, p.STDOUT if name == "stdout" else p.STDERR, streams,
                                        wanted[name]), name="copy")
             for name, reader in eio.readers.items()]
    if eio.stdin is not None:
        tasks.append(loop.create_task(_copy_in(app, container_id, exec_id, eio, streams), name="stdin"))
    if streams.opts.tty:
        tasks.append(loop.create_task(resize_loop(app, container_id, exec_id, streams), name="resize"))
    return tasks


async def _copy_out(reader: asyncio.StreamReader, channel: int, streams: Streams, forward: bool) -> None:
    while chunk := await reader.read(COPY_CHUNK):
        if forward:
            await streams.write(channel, chunk)


async def _copy_in(app: App, container_id: str, exec_id: str, eio: ExecIO, streams: Streams) -> None:
    """Client stdin into the FIFO; at EOF close our end and CloseIO so the process reads EOF."""
    assert eio.stdin is not None
    try:
        while (data := await streams.stdin.get()) is not None:
            await eio.stdin.write(data)
    except OSError as e:
        log.debug("exec %s stdin: %s", exec_id, e)
    eio.close_stdin()
    with contextlib.suppress(errors.CriError):
        await app.ctrd.tasks.CloseIO(tasks_pb.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True))


async def resize_loop(app: App, container_id: str, exec_id: str, streams: Streams) -> None:
    """Apply terminal sizes as they come (exec_id "" resizes the container's own terminal)."""
    while True:
        width, height = await streams.resizes.get()
        try:
            await app.ctrd.tasks.ResizePty(tasks_pb.ResizePtyRequest(
                container_id=container_id, exec_id=exec_id, width=width, height=height))
        except errors.CriError as e:
            log.debug("resize %s/%s to %dx%d: %s", container_id[:12], exec_id[:12], width, height, e)


