"""A container's stdio: FIFOs the shim writes, drained into the CRI log file by the event loop.

Why the holder descriptor: a FIFO read end opened non-blocking reports EOF until a writer appears,
and the shim opens its write end only inside Tasks.Create. So before Create we open the read end
*and* a write end of our own (the "holder"); once Create has returned the shim holds its writer and
we drop ours, and from then on EOF means the container's output really ended. On recovery the shim
already holds a writer, so the read end alone is enough.

Output goes through ``logfmt.LineSplitter`` into the log file (``O_APPEND``, 0640, parent 0755, as
containerd's CRI opens it); ``reopen_log`` swaps the file after kubelet renamed it. Listeners
(attach) get the raw bytes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from criproxy.io import logfmt

log = logging.getLogger("criproxy.io")
Listener = Callable[[bytes, bytes], None]      # (stream name, data)


def make_fifos(directory: Path, prefix: str, stdin: bool, stderr: bool = True) -> dict[str, str]:
    """mkfifo 0700 for each stream the process has, in a 0700 directory; {stream: path}."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = (["stdin"] if stdin else []) + ["stdout"] + (["stderr"] if stderr else [])
    out = {}
    for name in names:
        path = directory / f"{prefix}-{name}"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o700)
        out[name] = str(path)
    return out


class LogFile:
    """The CRI log file of one container, reopened on rotation."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.open()

    def open(self) -> None:
        if not self.path:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: bytes, tag: bytes, content: bytes) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, logfmt.record(stream, tag, content))
        except OSError as e:                      # a full disk must not kill the pump
            log.warning("writing container log %s failed: %s", self.path, e)

    def reopen(self) -> None:
        old = self.fd
        self.fd = -1
        self.open()
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Pump:
    """Reads one non-blocking FIFO from the event loop's reader callback; splits into log records.

    A plain ``add_reader`` callback rather than a transport: setting it up is synchronous (no
    awaiting, which matters on StartContainer's and ExecSync's path), and it reads at most
    ``MAX_READS`` chunks per wake-up so a container flooding its output cannot starve the loop.
    """

    CHUNK = 64 * 1024
    MAX_READS = 16

    def __init__(self, stream: bytes, io: ContainerIO, fd: int) -> None:
        self.io, self.stream, self.fd = io, stream, fd
        self.splitter = logfmt.LineSplitter(stream, io.logfile.write) if io.logfile else None
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        for _ in range(self.MAX_READS):
            try:
                data = os.read(self.fd, self.CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            if self.splitter is not None:
                self.splitter.feed(data)
            for listener in list(self.io.listeners):
                listener(self.stream, data)
            if len(data) < self.CHUNK:
                return

    def close(self) -> None:
        """EOF or shutdown: stop reading; a half line read so far is kept as a partial record."""
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if self.splitter is not None:
            self.splitter.eof()
        if not self.done.done():
            self.done.set_result(None)


class ContainerIO:
    """FIFOs + pumps + log file of one container task."""

    def __init__(self, directory: Path, container_id: str, log_path: str, tty: bool, stdin: bool) -> None:
        self.directory = directory
        self.container_id = container_id
        self.tty, self.want_stdin = tty, stdin
        self.logfile: LogFile | None = LogFile(log_path) if log_path else None
        self.paths: dict[str, str] = {}
        self.listeners: list[Listener] = []
        self._pumps: list[_Pump] = []
        self._holders: list[int] = []
        self.stdin_fd = -1

    @property
    def stdout(self) -> str:
        return self.paths.get("stdout", "")

    @property
    def stderr(self) -> str:
        return self.paths.get("stderr", "") if not self.tty else ""

    @property
    def stdin(self) -> str:
        return self.paths.get("stdin", "")

    async def create(self) -> None:
        """New FIFOs, read ends and holders: call before Tasks.Create."""
        self.paths = make_fifos(self.directory, self.container_id, self.want_stdin, stderr=not self.tty)
        await self._attach(hold=True)

    async def reattach(self) -> None:
        """Recovery: the FIFOs exist and the shim holds the writers."""
        self.paths = existing_fifos(self.directory, self.container_id)
        await self._attach(hold=False)

    async def _attach(self, hold: bool) -> None:
        self.attach(hold)

    def attach(self, hold: bool) -> None:
        """Open the read ends (and holders) and start the pumps; synchronous, nothing to await."""
        for name in ("stdout", "stderr"):
            path = self.paths.get(name)
            if not path:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if hold:
                self._holders.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            self._pumps.append(_Pump(name.encode(), self, fd))
        if "stdin" in self.paths:
            # O_RDWR never blocks on a FIFO; attach writes here, the shim reads.
            self.stdin_fd = os.open(self.paths["stdin"], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def close_stdin(self) -> None:
        """Drop our end of the stdin FIFO (attach of a ``stdin_once`` container: EOF for the process
        once the shim's end is closed too, with Tasks.CloseIO)."""
        if self.stdin_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = -1

    def release_holders(self) -> None:
        """The shim holds its writers now (Tasks.Create returned, or failed): EOF becomes real."""
        for fd in self._holders:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._holders.clear()

    async def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until every stream has reached EOF; False on timeout."""
        if not self._pumps:
            return True
        _done, pending = await asyncio.wait([p.done for p in self._pumps], timeout=timeout)
        return not pending

    def reopen_log(self) -> None:
        if self.logfile is not None:
            self.logfile.reopen()

    def close(self) -> None:
        """Stop reading and close everything (the FIFO files stay until ``remove``)."""
        self.release_holders()
        for p in self._pumps:
            p.close()
        self._pumps.clear()
        if self.stdin_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = -1
        if self.logfile is not None:
            self.logfile.close()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def existing_fifos(directory: Path, prefix: str) -> dict[str, str]:
    paths = {n: directory / f"{prefix}-{n}" for n in ("stdin", "stdout", "stderr")}
    return {n: str(p) for n, p in paths.items() if p.exists()}


def io_dir(state: Path, container_id: str) -> Path:
    return state / "containers" / container_id / "io"
