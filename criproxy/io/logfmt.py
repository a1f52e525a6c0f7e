"""The CRI container log format, without I/O: bytes in, log records out.

``<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\\n`` — one record per line of output, ``F``
for a full line, ``P`` for a piece of a longer one: a line is cut every ``max_line`` bytes (16 KiB,
containerd's ``max_container_log_line_size``), and an unterminated last line is written as ``P`` at
EOF. A trailing ``\\r`` before the newline is dropped, as containerd does. The kubelet parses these
files itself (``kubectl logs``), so the format is the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_LINE = 16 * 1024
FULL = b"F"
PARTIAL = b"P"
Sink = Callable[[bytes, bytes, bytes], None]   # (stream, tag, content)

_sec_cache: tuple[int, bytes] = (-1, b"")


def rfc3339nano(ns: int) -> bytes:
    """Go's time.RFC3339Nano in UTC: fraction with trailing zeros trimmed, none when zero."""
    global _sec_cache
    sec, frac = divmod(ns, 1_000_000_000)
    if _sec_cache[0] != sec:
        _sec_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
    head = _sec_cache[1]
    if frac == 0:
        return head + b"Z"
    return head + b"." + f"{frac:09d}".rstrip("0").encode() + b"Z"


def record(stream: bytes, tag: bytes, content: bytes, ns: int | None = None) -> bytes:
    """One log record, newline-terminated."""
    ts = rfc3339nano(time.time_ns() if ns is None else ns)
    return b"".join((ts, b" ", stream, b" ", tag, b" ", content, b"\n"))


class LineSplitter:
    """Feeds a byte stream and calls ``sink(stream, tag, content)`` per CRI log record."""

    __slots__ = ("_buf", "max_line", "sink", "stream")

    def __init__(self, stream: bytes, sink: Sink, max_line: int = MAX_LINE) -> None:
        self.stream, self.sink, self.max_line = stream, sink, max_line
        self._buf = b""

    def feed(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit_line(buf[start:nl])
            start = nl + 1
        rest = buf[start:]
        while len(rest) > self.max_line:
            self.sink(self.stream, PARTIAL, rest[:self.max_line])
            rest = rest[self.max_line:]
        self._buf = rest

    def _emit_line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > self.max_line:
            self.sink(self.stream, PARTIAL, line[:self.max_line])
            line = line[self.max_line:]
        self.sink(self.stream, FULL, line)

    def eof(self) -> None:
        """The stream ended: an unterminated last line is written as a partial record."""
        if self._buf:
            self.sink(self.stream, PARTIAL, self._buf)
            self._buf = b""
