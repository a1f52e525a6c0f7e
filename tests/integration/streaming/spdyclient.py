"""A minimal SPDY/3.1 client for the streaming tests, playing the part of Go's spdystream (kubelet's,
crictl's and kubectl's transport): upgrade, open streams with headers, send data, read until FIN."""

from __future__ import annotations

import asyncio
import struct
import zlib
from urllib.parse import urlsplit

from criproxy.streaming.spdyframes import DICTIONARY  # pinned by a unit test (length and Adler-32)


class Stream:
    def __init__(self, client: Client, sid: int) -> None:
        self.client, self.id = client, sid
        self.data = bytearray()
        self.replied = asyncio.Event()
        self.fin = asyncio.Event()
        self.reset = False

    async def write(self, data: bytes, fin: bool = False) -> None:
        self.client.w.write(struct.pack(">II", self.id, ((1 if fin else 0) << 24) | len(data)) + data)
        await self.client.w.drain()

    async def close(self) -> None:
        await self.write(b"", fin=True)

    async def read_all(self, timeout: float = 20) -> bytes:
        await asyncio.wait_for(self.fin.wait(), timeout)
        return bytes(self.data)

    async def wait_for(self, needle: bytes, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.data:
                if self.fin.is_set():
                    raise AssertionError(f"stream {self.id} ended before {needle!r}: {bytes(self.data)!r}")
                await asyncio.sleep(0.01)


class Client:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, status: int, headers: dict[str, str]):
        self.r, self.w, self.status, self.headers = r, w, status, headers
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                        DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.goaway = asyncio.Event()
        self.pongs: list[int] = []
        self.pong = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    def _control(self, kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload

    def _headers(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.lower().encode() + struct.pack(">I", len(v)) + v.encode()
            for k, v in headers.items())
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def open(self, headers: dict[str, str], fin: bool = False) -> Stream:
        """SYN_STREAM and wait for SYN_REPLY, as spdystream's CreateStream + Wait do."""
        stream = Stream(self, self.next_id)
        self.next_id += 2
        self.streams[stream.id] = stream
        payload = struct.pack(">IIH", stream.id, 0, 0) + self._headers(headers)
        self.w.write(self._control(1, 1 if fin else 0, payload))
        await self.w.drain()
        await asyncio.wait_for(stream.replied.wait(), 10)
        return stream

    async def ping(self, ping_id: int = 1) -> None:
        self.w.write(self._control(6, 0, struct.pack(">I", ping_id)))
        await self.w.drain()

    async def run(self) -> None:
        try:
            while True:
                head = await self.r.readexactly(8)
                word, fl = struct.unpack(">II", head)
                flags, length = fl >> 24, fl & 0xFFFFFF
                payload = await self.r.readexactly(length)
                if word & 0x80000000:
                    self._on_control(word & 0xFFFF, flags, payload)
                else:
                    stream = self.streams[word & 0x7FFFFFFF]
                    assert stream.replied.is_set(), "data before SYN_REPLY"
                    stream.data += payload
                    if flags & 1:
                        stream.fin.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for s in self.streams.values():
                s.fin.set()

    def _on_control(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == 2:                                          # SYN_REPLY
            sid = struct.unpack(">I", payload[:4])[0]
            raw = self.inflate.decompress(payload[4:])
            assert struct.unpack(">I", raw[:4])[0] == 0        # no headers expected
            self.streams[sid].replied.set()
            if flags & 1:
                self.streams[sid].fin.set()
        elif kind == 3:                                        # RST_STREAM
            sid = struct.unpack(">I", payload[:4])[0]
            self.streams[sid].reset = True
            self.streams[sid].replied.set()
            self.streams[sid].fin.set()
        elif kind == 6:
            self.pongs.append(struct.unpack(">I", payload[:4])[0])
            self.pong.set()
        elif kind == 7:
            self.goaway.set()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        self.w.close()
        try:
            await self.w.wait_closed()
        except (ConnectionError, asyncio.CancelledError):
            pass


async def connect(url: str, protocols: tuple[str, ...] = ("v4.channel.k8s.io",)) -> Client:
    """POST with ``Upgrade: SPDY/3.1``; on 101 the frame reader starts. Other answers are returned as-is."""
    u = urlsplit(url)
    r, w = await asyncio.open_connection(u.hostname, u.port)
    lines = [f"POST {u.path} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             "Content-Length: 0", "User-Agent: criproxy-tests"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await w.drain()
    head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    client = Client(r, w, status, headers)
    if status == 101:
        client.reader = asyncio.get_running_loop().create_task(client.run())
    return client
