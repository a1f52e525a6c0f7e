"""The CRI log format: timestamps, F/P tags, the 16 KiB split, CRLF, unterminated last lines."""

from __future__ import annotations

import re

import pytest

from criproxy.io import logfmt

TS = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def collect(max_line: int = logfmt.MAX_LINE) -> tuple[logfmt.LineSplitter, list[tuple[bytes, bytes]]]:
    out: list[tuple[bytes, bytes]] = []
    return logfmt.LineSplitter(b"stdout", lambda s, t, c: out.append((t, c)), max_line), out


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
    sp.feed(b"one\ntw")
    sp.feed(b"o\r\nthree")
    assert out == [(b"F", b"one"), (b"F", b"two")]
    sp.eof()
    assert out[-1] == (b"P", b"three")


def test_empty_lines_are_kept() -> None:
    sp, out = collect()
    sp.feed(b"\n\nx\n")
    assert out == [(b"F", b""), (b"F", b""), (b"F", b"x")]


@pytest.mark.parametrize(("length", "expected"), [
    (8, [(b"F", 8)]),
    (9, [(b"P", 8), (b"F", 1)]),
    (16, [(b"P", 8), (b"F", 8)]),
    (20, [(b"P", 8), (b"P", 8), (b"F", 4)]),
])
def test_long_lines_split_at_max(length: int, expected: list[tuple[bytes, int]]) -> None:
    sp, out = collect(max_line=8)
    sp.feed(b"a" * length + b"\n")
    assert [(t, len(c)) for t, c in out] == expected


def test_long_unterminated_output_is_flushed_in_pieces() -> None:
    sp, out = collect(max_line=8)
    sp.feed(b"b" * 8)
    assert out == []            # exactly max: the newline may still come
    sp.feed(b"b" * 9)
    assert [(t, len(c)) for t, c in out] == [(b"P", 8), (b"P", 8)]
    sp.eof()
    assert out[-1] == (b"P", b"b")


def test_default_split_is_16k() -> None:
    sp, out = collect()
    sp.feed(b"x" * (16 * 1024 + 5) + b"\n")
    assert [(t, len(c)) for t, c in out] == [(b"P", 16384), (b"F", 5)]
