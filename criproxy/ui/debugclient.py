"""Reading criproxy's debug socket: plain GETs and the ``/events`` server-sent-event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from criproxy.config import Config

BASE = "http://criproxy"
MAX_EVENT = 4 * 1024 * 1024     # bytes of one SSE line (a trace with hundreds of steps fits)


def default_socket() -> Path:
    """``<state>/debug.sock`` with the default state directory (what ``criproxy serve`` uses)."""
    state = Config.model_fields["state"].default
    return Path(state) / "debug.sock"


def session(sock: Path) -> aiohttp.ClientSession:
    """A client session whose every request goes to the debug socket."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)),
                                 timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
                                 read_bufsize=MAX_EVENT)


async def get_json(http: aiohttp.ClientSession, target: str) -> Any:
    async with http.get(BASE + target, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        return json.loads(await resp.read())


async def events(http: aiohttp.ClientSession) -> AsyncIterator[dict[str, Any]]:
    """The kept traces, the ring first, then live as criproxy keeps them, until the socket closes."""
    async with http.get(BASE + "/events") as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])
