"""A small WebSocket client for the Kubernetes remote-command and port-forward protocols (tests only)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


@dataclass
class Result:
    protocol: str | None
    out: dict[int, bytearray] = field(default_factory=lambda: {STDOUT: bytearray(), STDERR: bytearray(),
                                                               ERROR: bytearray()})
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def stdout(self) -> bytes:
        return bytes(self.out[STDOUT])

    @property
    def stderr(self) -> bytes:
        return bytes(self.out[STDERR])

    @property
    def error(self) -> bytes:
        return bytes(self.out[ERROR])

    @property
    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.error))

    @property
    def exit_code(self) -> int:
        st = self.status
        if st["status"] == "Success":
            return 0
        for cause in st.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        raise AssertionError(f"no exit code in {st}")


class Session:
    """An open remote-command WebSocket: send on channels, collect what comes back."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.b64 = ws.protocol is not None and ".base64." in f".{ws.protocol}"
        self.result = Result(ws.protocol)
        self.got = asyncio.Event()

    async def send(self, channel: int, data: bytes) -> None:
        if self.b64:
            await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes((channel,)) + data)

    async def close_stdin(self) -> None:
        await self.ws.send_bytes(bytes((CLOSE, STDIN)))

    async def resize(self, width: int, height: int) -> None:
        await self.send(RESIZE, json.dumps({"Width": width, "Height": height}).encode())

    async def read_all(self, timeout: float = 30) -> Result:
        async with asyncio.timeout(timeout):
            async for msg in self.ws:
                self._take(msg)
        return self.result

    async def read_until(self, channel: int, needle: bytes, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.result.out.get(channel, b""):
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    raise AssertionError(f"closed before {needle!r} on channel {channel}: {self.result}")
                self._take(msg)

    def _take(self, msg: aiohttp.WSMessage) -> None:
        if msg.type == aiohttp.WSMsgType.BINARY:
            channel, data = msg.data[0], bytes(msg.data[1:])
        elif msg.type == aiohttp.WSMsgType.TEXT:
            channel, data = ord(msg.data[0]) - ord("0"), base64.b64decode(msg.data[1:])
        else:
            return
        self.result.frames.append((channel, data))
        self.result.out.setdefault(channel, bytearray()).extend(data)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def connect(url: str, protocols: tuple[str, ...] = ("v5.channel.k8s.io",)) -> Session:
    http = aiohttp.ClientSession()
    try:
        ws = await http.ws_connect(url, protocols=protocols, autoping=True, max_msg_size=0)
    except BaseException:
        await http.close()
        raise
    return Session(http, ws)


async def run(url: str, stdin: bytes | None = None, protocols: tuple[str, ...] = ("v5.channel.k8s.io",),
              timeout: float = 30) -> Result:
    """Connect, send stdin (then half-close it), read until the server closes."""
    s = await connect(url, protocols)
    try:
        if stdin is not None:
            await s.send(STDIN, stdin)
            await s.close_stdin()
        return await s.read_all(timeout)
    finally:
        await s.close()
