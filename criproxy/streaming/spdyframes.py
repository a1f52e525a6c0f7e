"""SPDY/3.1 framing, as far as Kubernetes streaming needs it, without I/O.

Every frame has an 8-byte header. A control frame: bit 0 set, 15-bit version (3), 16-bit type, 8-bit
flags, 24-bit length. A data frame: bit 0 clear, 31-bit stream ID, 8-bit flags (FIN = 1), 24-bit
length. Header blocks (in SYN_STREAM, SYN_REPLY, HEADERS) are ``count, (len name, len value)*`` with
32-bit lengths, compressed by ONE zlib stream per direction for the whole connection, primed with
the fixed SPDY/3 dictionary and sync-flushed after each block: so every header block must pass through
the decompressor in order, even of frames we ignore, or the next one cannot be read.

Go's spdystream (what kubelet, crictl and kubectl use) does no flow control: WINDOW_UPDATE and
SETTINGS are read and ignored here too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY, HEADERS = 1, 2, 3, 6, 7, 8   # control frame types
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 1, 3, 5
MAX_HEADER_BLOCK = 64 * 1024        # decompressed; real ones are a few dozen bytes
MAX_CONTROL_FRAME = MAX_HEADER_BLOCK + 1024     # a larger one could not hold a valid header block

_WORDS = [*(
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date etag "
    "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
    "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
    "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status"
).split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The SPDY/3 header compression dictionary (draft 3, 2.6.10.1): length-prefixed words, then a tail.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1; the connection cannot continue."""


@dataclass
class Frame:
    """A parsed frame: ``kind`` is a control type, or 0 for data."""

    kind: int
    flags: int
    stream_id: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0             # RST_STREAM / GOAWAY status, PING id

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def parse_head(head: bytes) -> tuple[bool, int, int, int]:
    """(control, type or stream ID, flags, length) of an 8-byte frame header."""
    word, flags_len = struct.unpack(">II", head)
    flags, length = flags_len >> 24, flags_len & 0xFFFFFF
    if word & 0x80000000:
        version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not 3")
        return True, kind, flags, length
    return False, word & 0x7FFFFFFF, flags, length


class Codec:
    """Header (de)compression state of one connection, plus frame encoders."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                         zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    # -- decoding -----------------------------------------------------------------------------------
    def control(self, kind: int, flags: int, payload: bytes) -> Frame:
        """Parse a control frame's payload (header blocks are decompressed in arrival order)."""
        if kind in (SYN_STREAM, SYN_REPLY, HEADERS):
            offset = 10 if kind == SYN_STREAM else 4
            if len(payload) < offset:
                raise ProtocolError(f"control frame type {kind} too short")
            sid = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            return Frame(kind, flags, sid, headers=self.decode_headers(payload[offset:]))
        if kind in (RST_STREAM, GOAWAY) and len(payload) >= 8:
            sid, status = struct.unpack(">II", payload[:8])
            return Frame(kind, flags, sid & 0x7FFFFFFF, value=status)
        if kind == PING and len(payload) >= 4:
            return Frame(kind, flags, value=struct.unpack(">I", payload[:4])[0])
        return Frame(kind, flags)                    # SETTINGS (4), WINDOW_UPDATE (9), unknown: ignored

    def decode_headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
        return parse_header_block(raw)

    # -- encoding -----------------------------------------------------------------------------------
    def encode_headers(self, headers: dict[str, str]) -> bytes:
        raw = header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return control_frame(SYN_REPLY, FLAG_FIN if fin else 0,
                             struct.pack(">I", stream_id) + self.encode_headers(headers or {}))



def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def rst_stream(stream_id: int, status: int) -> bytes:
    return control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def goaway(last_stream_id: int, status: int = 0) -> bytes:
    return control_frame(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def ping(ping_id: int) -> bytes:
    return control_frame(PING, 0, struct.pack(">I", ping_id))


def header_block(headers: dict[str, str]) -> bytes:
    """Uncompressed name/value block; names are lowercase on the wire."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def parse_header_block(raw: bytes) -> dict[str, str]:
    """Names lowercased; a multi-valued header (values NUL-separated) keeps its first value."""
    try:
        (count,), pos, out = struct.unpack(">I", raw[:4]), 4, {}
        for _ in range(count):
            (n,) = struct.unpack(">I", raw[pos:pos + 4])
            name = raw[pos + 4:pos + 4 + n]
            pos += 4 + n
            (v,) = struct.unpack(">I", raw[pos:pos + 4])
            value = raw[pos + 4:pos + 4 + v]
            pos += 4 + v
            out[name.decode("latin-1").lower()] = value.split(b"\x00")[0].decode("latin-1")
        return out
    except struct.error:
        raise ProtocolError("truncated header block") from None
