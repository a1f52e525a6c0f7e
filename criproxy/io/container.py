"""A container's stdio: FIFOs the shim writes, drained into the CRI log file by a pump thread.

Why the holder descriptor: a FIFO read end opened non-blocking reports EOF until a writer appears,
and the shim opens its write end only inside Tasks.Create. So before Create we open the read end
*and* a write end of our own (the "holder"); once Create has returned the shim holds its writer and
we drop ours, and from then on EOF means the container's output really ended. On recovery the shim
already holds a writer, so the read end alone is enough.

Output goes through ``logfmt.Formatter`` into the log file (``O_APPEND``, 0640, parent 0755, as
containerd's CRI opens it), one write per read, from one thread per container task (``_Pump``: why a
thread, and how it hands data to the loop, is explained there); ``reopen_log`` swaps the file after
kubelet renamed it. Listeners (attach, ExecSync) get the raw bytes too, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import shutil
import threading
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
    """The CRI log file of one container, reopened on rotation.

    Written by the pump thread and reopened/closed from elsewhere, so every use of the descriptor is
    under ``lock`` (a write never lands in a descriptor closed and reused meanwhile). Closing is final:
    a reopen after it does nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.lock = threading.Lock()
        self.closed = False
        self._failing = False
        self.open()

    def open(self) -> None:
        if not self.path:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, data: bytes) -> None:
        """Append whole records; a failure (full disk) is logged once per episode and the data dropped."""
        if not data:
            return
        with self.lock:
            if self.fd < 0:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view):]
                self._failing = False
            except OSError as e:                  # a full disk must not kill the pump
                if not self._failing:
                    log.warning("writing container log %s failed: %s", self.path, e)
                self._failing = True

    def reopen(self) -> None:
        """Blocking (a file open, and waiting out a write in progress): call it off the event loop."""
        with self.lock:
            if self.closed:
                return
            old = self.fd
            self.fd = -1
            self.open()
            if old >= 0:
                os.close(old)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class _Stream:
    """One output FIFO read by the pump thread."""

    __slots__ = ("done", "fd", "fmt", "name")

    def __init__(self, name: bytes, fd: int, done: asyncio.Future[None]) -> None:
        self.name, self.fd, self.done = name, fd, done
        self.fmt = logfmt.Formatter(name)


class _Pump:
    """One thread per container task that drains its stdout/stderr FIFOs into the CRI log file.

    Why a thread: a container may print as fast as it can, and its log file sits on a disk that can
    stall writes (dirty-page throttling) for a long time; neither may delay the event loop that
    answers every other CRI call. The thread does blocking I/O only — ``poll`` on the FIFOs and a wake
    pipe, one ``read`` of at most ``CHUNK`` bytes, one ``write`` of that read's formatted records — and
    holds the GIL only for the few C-level byte operations of ``logfmt.Formatter`` per read — short,
    because a read is at most CHUNK (16 KiB: larger reads made the event loop wait measurably longer
    for the GIL). It runs at niceness NICE, so on a busy node the CPU goes to the thread answering
    CRI calls first; log writing is what may lag. The FIFO is never read faster than the log file is
    written, so a flood is bounded by the pipe (the shim and the container wait, as with containerd's
    CRI), never by memory.

    Listeners (attach, ExecSync's collector) run on the event loop: each read is handed over with
    ``call_soon_threadsafe``, at most ``IN_FLIGHT`` reads at a time (the thread waits for the loop
    beyond that, so a busy loop cannot pile up memory). End of stream is reported the same way, after
    the stream's last data, so ``wait_drained`` returning means its records are in the file and every
    listener has seen every byte.

    Stopping (``stop``) is a flag under ``lock``: once ``stop`` has returned no further read starts,
    so what the shim writes afterwards stays in the pipe for the next reader (recovery after a
    restart). The thread owns the FIFO descriptors and closes them, and the log file too when asked,
    on its way out.
    """

    CHUNK = 16 * 1024
    IN_FLIGHT = 16
    NICE = 10

    def __init__(self, io: ContainerIO, streams: list[_Stream]) -> None:
        self.io, self.streams = io, streams
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()
        self.stopping = False
        self.exited = False
        self.close_log = False
        self.room = threading.Semaphore(self.IN_FLIGHT)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name=f"log-pump-{io.container_id[:12]}", daemon=True)
        self.thread.start()

    def stop(self, close_log: bool) -> None:
        """No read starts after this returns; the thread finishes the current one and exits."""
        with self.lock:
            if self.exited:
                if close_log and self.io.logfile is not None:
                    self.io.logfile.close()
                return
            self.stopping = True
            self.close_log = self.close_log or close_log
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"x")

    def _run(self) -> None:
        if self.io.logfile is not None:         # not ExecSync's: a probe waits for its output's end
            with contextlib.suppress(OSError):  # Linux: niceness is per thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.NICE)
        by_fd = {s.fd: s for s in self.streams}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while by_fd:
                for fd, _ev in poller.poll():
                    s = by_fd.get(fd)
                    if s is None:
                        continue
                    with self.lock:
                        if self.stopping:
                            return
                        try:
                            data = os.read(fd, self.CHUNK)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                    if not self._handle(s, data):
                        poller.unregister(fd)
                        del by_fd[fd]
                if self.stopping:
                    return
        except Exception:                         # a bug here must not go unnoticed, nor hang callers
            log.exception("log pump of %s failed", self.io.container_id[:12])
        finally:
            self._exit(by_fd)

    def _handle(self, s: _Stream, data: bytes) -> bool:
        """One read of one stream (b"" = EOF); False once the stream has ended."""
        logfile = self.io.logfile
        if not data:
            if logfile is not None:
                logfile.write(s.fmt.eof())
            self._to_loop(self._finished, s)
            return False
        if logfile is not None:
            logfile.write(s.fmt.feed(data))
        if self.io.listeners and self._room():
            self._to_loop(self._deliver, s.name, data)
        return True

    def _room(self) -> bool:
        while not self.room.acquire(timeout=0.5):
            if self.stopping:
                return False
        return True

    def _to_loop(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:                      # the loop is closed: the process is going away
            if fn == self._deliver:
                self.room.release()

    def _deliver(self, stream: bytes, data: bytes) -> None:
        self.room.release()
        for listener in list(self.io.listeners):
            listener(stream, data)

    @staticmethod
    def _finished(s: _Stream) -> None:
        if not s.done.done():
            s.done.set_result(None)

    def _exit(self, open_fds: dict[int, _Stream]) -> None:
        """Close what the thread owns. Streams cut short by ``stop`` keep a half line as ``P``."""
        logfile = self.io.logfile
        for s in open_fds.values():
            if logfile is not None:
                logfile.write(s.fmt.eof())
            self._to_loop(self._finished, s)
        with self.lock:
            self.exited = True
            for s in self.streams:
                with contextlib.suppress(OSError):
                    os.close(s.fd)
            for fd in (self.wake_r, self.wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self.close_log and logfile is not None:
                logfile.close()


class ContainerIO:
    """FIFOs + pumps + log file of one container task."""

    def __init__(self, directory: Path, container_id: str, log_path: str, tty: bool, stdin: bool) -> None:
        self.directory = directory
        self.container_id = container_id
        self.tty, self.want_stdin = tty, stdin
        self.logfile: LogFile | None = LogFile(log_path) if log_path else None
        self.paths: dict[str, str] = {}
        self.listeners: list[Listener] = []
        self._pump: _Pump | None = None
        self._thread: threading.Thread | None = None
        self._done: list[asyncio.Future[None]] = []
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
        """Open the read ends (and holders) and start the pump thread; synchronous, nothing to await."""
        loop = asyncio.get_running_loop()
        streams = []
        for name in ("stdout", "stderr"):
            path = self.paths.get(name)
            if not path:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if hold:
                self._holders.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            streams.append(_Stream(name.encode(), fd, loop.create_future()))
        if streams:
            self._done = [s.done for s in streams]
            self._pump = _Pump(self, streams)
            self._thread = self._pump.thread
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
        """Wait until every stream has reached EOF and its records are written; False on timeout."""
        if not self._done:
            return True
        _done, pending = await asyncio.wait(self._done, timeout=timeout)
        return not pending

    async def reopen_log(self) -> None:
        """After kubelet renamed the file: a new one at the path (in a thread: it may wait out a write)."""
        if self.logfile is not None:
            await asyncio.to_thread(self.logfile.reopen)

    def close(self) -> None:
        """Stop reading and close everything (the FIFO files stay until ``remove``); never blocks:
        the pump thread closes the FIFOs and the log file itself once its current read is written."""
        self.release_holders()
        if self._pump is not None:
            self._pump.stop(close_log=True)
            self._pump = None
        elif self.logfile is not None:
            self.logfile.close()
        if self.stdin_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = -1

    async def wait_closed(self, timeout: float) -> bool:
        """After ``close``: wait (off the loop) until the pump thread has written its last records and
        closed the file — at shutdown, before the process exits under it. False on timeout."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        await asyncio.to_thread(thread.join, timeout)
        return not thread.is_alive()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def existing_fifos(directory: Path, prefix: str) -> dict[str, str]:
    paths = {n: directory / f"{prefix}-{n}" for n in ("stdin", "stdout", "stderr")}
    return {n: str(p) for n, p in paths.items() if p.exists()}


def io_dir(state: Path, container_id: str) -> Path:
    return state / "containers" / container_id / "io"
