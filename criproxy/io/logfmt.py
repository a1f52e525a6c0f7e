"""The CRI container log format, without I/O: bytes in, log records out.

``<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\\n`` — one record per line of output, ``F``
for a full line, ``P`` for a piece of a longer one: a line is cut every ``max_line`` bytes (16 KiB,
containerd's ``max_container_log_line_size``), and an unterminated last line is written as ``P`` at
EOF. A trailing ``\\r`` before the newline is dropped, as containerd does. The kubelet parses these
files itself (``kubectl logs``), so the format is the contract.

Why whole reads and not lines: a container printing short lines as fast as it can (``yes``) puts
tens of thousands of lines in one 64 KiB read. ``Formatter.feed`` turns such a read into its records
with a handful of C-level byte operations (one ``replace`` inserts the record prefix after every
newline) and one timestamp for the read, instead of a Python call and a write per line; only lines
longer than ``max_line`` take a slower path, and there are at most a few of those per read.
"""

from __future__ import annotations

import time

MAX_LINE = 16 * 1024
FULL = b"F"
PARTIAL = b"P"

_sec_cache: tuple[int, bytes] = (-1, b"")


def rfc3339nano(ns: int) -> bytes:
    """Go's time.RFC3339Nano in UTC: fraction with trailing zeros trimmed, none when zero."""
    global _sec_cache
    sec, frac = divmod(ns, 1_000_000_000)
    cached = _sec_cache
    if cached[0] == sec:
        head = cached[1]
    else:
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
        _sec_cache = (sec, head)
    if frac == 0:
        return head + b"Z"
    return head + b"." + f"{frac:09d}".rstrip("0").encode() + b"Z"


def record(stream: bytes, tag: bytes, content: bytes, ns: int | None = None) -> bytes:
    """One log record, newline-terminated."""
    ts = rfc3339nano(time.time_ns() if ns is None else ns)
    return b"".join((ts, b" ", stream, b" ", tag, b" ", content, b"\n"))


class Formatter:
    """One output stream's bytes → CRI log records, a read at a time.

    ``feed`` returns the records of every line completed by the read (all stamped with the read's
    time) as one buffer, so the caller writes it with one ``write``; an unterminated rest is kept
    for the next read, except that whole ``max_line`` pieces of it are written out as ``P`` records
    at once (memory stays bounded whatever the container prints). ``eof`` flushes the rest as ``P``.
    """

    __slots__ = ("_rest", "max_line", "stream")

    def __init__(self, stream: bytes, max_line: int = MAX_LINE) -> None:
        self.stream, self.max_line = stream, max_line
        self._rest = b""

    def feed(self, data: bytes, ns: int | None = None) -> bytes:
        ts = rfc3339nano(time.time_ns() if ns is None else ns)
        buf = self._rest + data if self._rest else data
        end = buf.rfind(b"\n") + 1
        out = [self._lines(buf[:end] if end < len(buf) else buf, ts)] if end else []
        rest = buf[end:] if end else buf
        m = self.max_line
        if len(rest) > m:
            head = self._prefix(ts, PARTIAL)
            # A rest of m bytes and a "\r" waits: a "\n" next makes it a full line of m (as in containerd).
            while len(rest) > m and not (len(rest) == m + 1 and rest[-1] == 13):
                out += (head, rest[:m], b"\n")
                rest = rest[m:]
        self._rest = rest
        return b"".join(out)

    def eof(self, ns: int | None = None) -> bytes:
        """The stream ended: an unterminated last line becomes a partial record."""
        rest, self._rest = self._rest, b""
        return record(self.stream, PARTIAL, rest, ns) if rest else b""

    def _prefix(self, ts: bytes, tag: bytes) -> bytes:
        return b"".join((ts, b" ", self.stream, b" ", tag, b" "))

    def _lines(self, body: bytes, ts: bytes) -> bytes:
        """Records for ``body``, whole lines each ending in ``\\n``."""
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        full = self._prefix(ts, FULL)
        m, n = self.max_line, len(body)
        parts: list[bytes] = []
        seg = start = 0
        if n > m + 1:
            # Jump from line start to line start, up to m+1 bytes at a time: a window of m+1 bytes
            # holding no newline is a line longer than m, the only kind that needs splitting.
            while start < n:
                r = body.rfind(b"\n", start, start + m + 1)
                if r >= 0:
                    start = r + 1
                    continue
                nl = body.find(b"\n", start)
                if seg < start:
                    parts.append(_prefixed(full, body[seg:start]))
                parts.append(self._long(body[start:nl], ts, full))
                seg = start = nl + 1
        if seg < n:
            parts.append(_prefixed(full, body[seg:] if seg else body))
        return b"".join(parts)

    def _long(self, line: bytes, ts: bytes, full: bytes) -> bytes:
        head = self._prefix(ts, PARTIAL)
        m = self.max_line
        out: list[bytes] = []
        while len(line) > m:
            out += (head, line[:m], b"\n")
            line = line[m:]
        out += (full, line, b"\n")
        return b"".join(out)


def _prefixed(prefix: bytes, lines: bytes) -> bytes:
    """``prefix`` before every line of ``lines`` (each ending in ``\\n``), in one ``replace``."""
    return b"".join((prefix, lines[:-1].replace(b"\n", b"\n" + prefix), b"\n"))
