"""FIFOs for a streamed exec process, with flow control in both directions.

Unlike the container log pump (``criproxy.io.container``), which must never block the container and
so drops nothing but never waits for anyone, an interactive exec has one reader on each side: when
the client is slow, reading the process's stdout pauses (the shim's pipe fills and the process
blocks, as it would on a terminal), and stdin waits for room in the pipe.

The holder trick is the same as the log pump's: a FIFO read end opened non-blocking reports EOF
until a writer appears, so we hold a write end ourselves until Tasks.Start has returned (the shim has
opened its writers by then). The stdin FIFO is opened read-write by us, so the shim's open never waits
and the process sees EOF only when we close our end and call CloseIO.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

READ_LIMIT = 256 * 1024


class FifoWriter:
    """Non-blocking writes to a FIFO that wait (on the event loop) while the pipe is full."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._writable(loop)

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self.fd, wake)
        try:
            await ready
        finally:
            loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class ExecIO:
    """The FIFOs of one exec process.

    stdout always exists, and stderr unless there is a terminal: the runc shim either gets no stdio
    at all or opens every output path it is given ("" fails), so output nobody asked for is read and
    dropped by the caller rather than left out.
    """

    def __init__(self, directory: Path, stdin: bool, tty: bool) -> None:
        self.directory = directory
        self.want = {"stdin": stdin, "stdout": True, "stderr": not tty}
        self.paths: dict[str, str] = {}
        self.readers: dict[str, asyncio.StreamReader] = {}
        self.stdin: FifoWriter | None = None
        self._holders: list[int] = []
        self._transports: list[asyncio.BaseTransport] = []

    async def create(self) -> None:
        """mkfifo (0700 dir), then read ends + holders for output, a read-write end for stdin."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        loop = asyncio.get_running_loop()
        for name, wanted in self.want.items():
            if not wanted:
                continue
            path = self.directory / name
            os.mkfifo(path, 0o700)
            self.paths[name] = str(path)
            if name == "stdin":
                self.stdin = FifoWriter(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._holders.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            reader = asyncio.StreamReader(limit=READ_LIMIT)
            transport, _ = await loop.connect_read_pipe(
                lambda r=reader: asyncio.StreamReaderProtocol(r), os.fdopen(fd, "rb", buffering=0))  # type: ignore[misc]
            self._transports.append(transport)
            self.readers[name] = reader

    def release_holders(self) -> None:
        for fd in self._holders:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._holders.clear()

    def close_stdin(self) -> None:
        if self.stdin is not None:
            self.stdin.close()

    def remove(self) -> None:
        """Close every end and delete the FIFOs."""
        self.release_holders()
        self.close_stdin()
        for t in self._transports:
            t.close()
        self._transports.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
