"""Process, port, mount and lock helpers shared by the harness pieces.

Everything here stops things by PID or by a path this session owns: several engineers run the suite
on one machine at once, so nothing may act on processes or mounts by a broad name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class HarnessError(RuntimeError):
    """The test environment could not be brought up (an error, never a skip)."""


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; raise HarnessError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(argv: Sequence[str], timeout: float = 120, check: bool = True, input: str | None = None) -> str:
    """Run a command, return stdout; on failure raise HarnessError with stderr (why: readable errors)."""
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stderr}{res.stdout}")
    return res.stdout


def tail(path: Path, lines: int = 80) -> str:
    """Last lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal one PID, ignoring that it may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Daemon:
    """A long-running child process with its output in a log file, stopped by its own PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Spawn the process (appending to its log, so restarts keep history)."""
        if self.alive():
            raise HarnessError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # kept open for the child's lifetime
        self._log.write(f"---- start {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited_with(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig``, wait ``grace`` seconds, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            kill_pid(self.proc.pid, sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                kill_pid(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL at once (crash tests)."""
        return self.stop(grace=10.0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def pids_with_cmdline(match: Callable[[list[str]], bool]) -> list[int]:
    """PIDs whose argv satisfies ``match`` (argv read from /proc/PID/cmdline)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if argv and match(argv):
            out.append(int(entry.name))
    return out


def _ppid_map() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(entry.path, "stat").read_text()
                out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(roots: Iterable[int]) -> list[int]:
    """All descendant PIDs of ``roots`` (not the roots themselves), deepest last."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppid_map().items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(roots)
    while todo:
        kids = children.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def kill_trees(roots: Iterable[int], timeout: float = 10.0) -> None:
    """SIGKILL the descendants of ``roots`` first (container processes under shims), then the roots."""
    roots = list(roots)
    for pid in descendants(roots):
        kill_pid(pid)
    for pid in roots:
        kill_pid(pid)
    with contextlib.suppress(HarnessError):
        wait_until(lambda: not any(pid_alive(p) for p in roots), timeout, "killed processes to exit")


def _unescape_mountinfo(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(prefixes: Iterable[str | Path]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest (and latest) first."""
    roots = [str(p).rstrip("/") for p in prefixes]
    found: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape_mountinfo(line.split()[4])
        if any(point == r or point.startswith(r + "/") for r in roots):
            found.append(point)
    found.reverse()  # later mounts may stack on earlier ones at the same point
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(prefixes: Iterable[str | Path], rounds: int = 5) -> None:
    """Lazily unmount everything mounted below ``prefixes`` (rootfs, shm, pinned netns…)."""
    prefixes = list(prefixes)
    for _ in range(rounds):
        points = mounts_under(prefixes)
        if not points:
            return
        for point in points:
            if _libc.umount2(os.fsencode(point), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):
                    raise HarnessError(f"umount2({point}) failed: {os.strerror(err)}")
    left = mounts_under(prefixes)
    if left:
        raise HarnessError(f"mounts left under {prefixes}: {left}")


class FileLock:
    """An flock'ed lock file, held for as long as this object keeps its descriptor open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self, unlink: bool = False) -> None:
        if self.fd is None:
            return
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = None


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` directly, never through an environment proxy (traffic stays on this machine)."""
    with _NO_PROXY.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as resp:
        body: bytes = resp.read()
        return body
