"""The streaming HTTP server: ``/exec/<token>``, ``/attach/<token>``, ``/portforward/<token>``.

Its listening socket is bound at start-up (so the port is fixed and logged from the beginning), but
aiohttp is imported and the server started only when the first Exec/Attach/PortForward call hands out
a URL: a criproxy nobody execs into does not pay for an HTTP stack. Until then a connection would
just wait in the listen backlog, and nobody can have a URL before that first call.

Each request consumes its token (unknown, used or expired → 404, as kubelet answers) and is then
dispatched on its ``Upgrade`` header: WebSocket, or SPDY/3.1 (``spdy.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.streaming.tokens import TokenCache

if TYPE_CHECKING:
    from criproxy.app import App

log = logging.getLogger("criproxy.streaming")
KINDS = ("exec", "attach", "portforward")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); a bad value is a config error."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"streaming_address {address!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind is announced as loopback, IPv6 in brackets."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "[::1]"
    return f"[{ip}]" if ip.version == 6 else str(ip)


class StreamingServer:
    """Tokens + the listening socket + (once needed) the aiohttp runner.

    ``serve`` starts the HTTP server on the bound socket and returns its runner: the routes live in
    ``handlers.py``, which imports this module, so they are handed in rather than imported here.
    """

    def __init__(self, app: App, serve: Callable[[StreamingServer], Awaitable[Any]]) -> None:
        self.app = app
        self._serve = serve
        self.tokens = TokenCache(app.config.streaming_token_ttl, app.config.streaming_max_tokens)
        self.sock: socket.socket | None = None
        self.runner: Any = None
        self._starting: asyncio.Lock = asyncio.Lock()
        self.sessions: set[asyncio.Task[Any]] = set()

    def bind(self) -> None:
        host, port = parse_address(self.app.config.streaming_address)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.set_inheritable(False)
        try:
            sock.bind(addr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        log.info("streaming server on %s", self.base_url)

    @property
    def base_url(self) -> str:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return f"http://{url_host(host)}:{port}"

    async def new_url(self, kind: str, request: Any) -> str:
        """Store the request under a fresh token and return the URL the client should connect to."""
        if self.sock is None:
            raise errors.Unavailable("the streaming server is not running")
        await self.ensure_serving()
        token = self.tokens.put(kind, request)
        return f"{self.base_url}/{kind}/{token}"

    async def ensure_serving(self) -> None:
        if self.runner is not None:
            return
        async with self._starting:
            if self.runner is None:
                self.runner = await self._serve(self)

    async def stop(self) -> None:
        for task in list(self.sessions):
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
