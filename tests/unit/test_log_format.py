"""The CRI log format: timestamps, F/P tags, the 16 KiB split, CRLF, unterminated last lines."""

from __future__ import annotations

import random
import re

import pytest

from criproxy.io import logfmt

TS = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def parse(blob: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, content) of every record; each must be ``<ts> stdout <tag> <content>``."""
    out = []
    assert blob == b"" or blob.endswith(b"\n")
    for line in blob.split(b"\n")[:-1]:
        ts, stream, tag, content = line.split(b" ", 3)
        assert TS.match(ts) and stream == b"stdout" and tag in (b"F", b"P"), line[:80]
        out.append((tag, content))
    return out


def collect(max_line: int = logfmt.MAX_LINE) -> tuple[logfmt.Formatter, list[tuple[bytes, bytes]]]:
    return logfmt.Formatter(b"stdout", max_line), []


def feed(fmt: logfmt.Formatter, out: list[tuple[bytes, bytes]], data: bytes) -> None:
    out += parse(fmt.feed(data))


def eof(fmt: logfmt.Formatter, out: list[tuple[bytes, bytes]]) -> None:
    out += parse(fmt.eof())


@pytest.mark.parametrize(("ns", "text"), [
    (0, b"1970-01-01T00:00:00Z"),
    (1_500_000_000, b"1970-01-01T00:00:01.5Z"),
    (1_700_000_000_123_456_789, b"2023-11-14T22:13:20.123456789Z"),
    (1_700_000_000_000_001_000, b"2023-11-14T22:13:20.000001Z"),
])
def test_rfc3339nano(ns: int, text: bytes) -> None:
    assert logfmt.rfc3339nano(ns) == text


def test_record_layout() -> None:
    rec = logfmt.record(b"stderr", b"F", b"hello world")
    ts, stream, tag, rest = rec.split(b" ", 3)
    assert TS.match(ts) and stream == b"stderr" and tag == b"F" and rest == b"hello world\n"


def test_lines_and_partial_feeds() -> None:
    sp, out = collect()
    feed(sp, out, b"one\ntw")
    feed(sp, out, b"o\r\nthree")
    assert out == [(b"F", b"one"), (b"F", b"two")]
    eof(sp, out)
    assert out[-1] == (b"P", b"three")


def test_empty_lines_are_kept() -> None:
    sp, out = collect()
    feed(sp, out, b"\n\nx\n")
    assert out == [(b"F", b""), (b"F", b""), (b"F", b"x")]


@pytest.mark.parametrize(("length", "expected"), [
    (8, [(b"F", 8)]),
    (9, [(b"P", 8), (b"F", 1)]),
    (16, [(b"P", 8), (b"F", 8)]),
    (20, [(b"P", 8), (b"P", 8), (b"F", 4)]),
])
def test_long_lines_split_at_max(length: int, expected: list[tuple[bytes, int]]) -> None:
    sp, out = collect(max_line=8)
    feed(sp, out, b"a" * length + b"\n")
    assert [(t, len(c)) for t, c in out] == expected


def test_long_unterminated_output_is_flushed_in_pieces() -> None:
    sp, out = collect(max_line=8)
    feed(sp, out, b"b" * 8)
    assert out == []            # exactly max: the newline may still come
    feed(sp, out, b"b" * 9)
    assert [(t, len(c)) for t, c in out] == [(b"P", 8), (b"P", 8)]
    eof(sp, out)
    assert out[-1] == (b"P", b"b")


def test_default_split_is_16k() -> None:
    sp, out = collect()
    feed(sp, out, b"x" * (16 * 1024 + 5) + b"\n")
    assert [(t, len(c)) for t, c in out] == [(b"P", 16384), (b"F", 5)]


def reference(data: bytes, max_line: int) -> list[tuple[bytes, bytes]]:
    """The format written out the slow, obvious way: line by line."""
    lines = data.split(b"\n")
    out: list[tuple[bytes, bytes]] = []
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if not last and line.endswith(b"\r"):
            line = line[:-1]
        if last and not line:
            break
        while len(line) > max_line:
            out.append((b"P", line[:max_line]))
            line = line[max_line:]
        out.append((b"P" if last else b"F", line))
    return out


@pytest.mark.parametrize("seed", range(100))
def test_matches_line_by_line_reference_whatever_the_reads(seed: int) -> None:
    rnd = random.Random(seed)
    max_line = rnd.choice([4, 7, 16, 64])
    # No lone "\r" (only "\r\n"): runs of "\r" at a 16 KiB boundary are an edge the reference leaves out.
    pieces = [rnd.choice([b"y\n", b"\n", b"\r\n", b"ab", b"x" * rnd.randint(1, 3 * max_line)])
              for _ in range(rnd.randint(1, 300))]
    data = b"".join(pieces)
    sp, out = collect(max_line)
    i = 0
    while i < len(data):
        n = rnd.randint(1, 4 * max_line)
        feed(sp, out, data[i:i + n])
        i += n
    eof(sp, out)
    assert out == reference(data, max_line)


def test_one_read_of_many_lines_is_one_buffer_with_one_timestamp() -> None:
    sp = logfmt.Formatter(b"stderr")
    blob = sp.feed(b"y\n" * 10000, ns=1_700_000_000_123_456_789)
    assert blob == b"2023-11-14T22:13:20.123456789Z stderr F y\n" * 10000
