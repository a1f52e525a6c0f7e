"""Exec, Attach and PortForward streams: a URL with a single-use token, then a streaming server.

The CRI calls (``cri/stream_*.py``) only validate and store the request (``tokens.py``) and return
``http://<streaming_address>/<kind>/<token>``; the client connects there and speaks the Kubernetes
remote-command or port-forward protocol over WebSocket or SPDY/3.1 (``server.py`` and below).
Nothing here imports aiohttp until the first streaming call: see ``server.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.errors import StartupError
from criproxy.streaming.server import StreamingServer

if TYPE_CHECKING:
    from criproxy.app import App


async def _serve(server: StreamingServer) -> Any:
    """Start the HTTP side; aiohttp and the routes load here, with the first streaming URL."""
    from criproxy.streaming import handlers

    return await handlers.start(server)


async def new_url(app: App, kind: str, request: Any) -> str:
    if app.streaming is None:
        raise errors.Unavailable("the streaming server is not running")
    return await app.streaming.new_url(kind, request)


def start(app: App) -> StreamingServer:
    """Bind the listening socket now, so a bad or taken streaming_address stops start-up with one
    line; the App's Stream* handlers reach the server from then on."""
    server = StreamingServer(app, _serve)
    try:
        server.bind()
    except (ValueError, OSError) as e:
        raise StartupError(f"cannot serve streaming on {app.config.streaming_address!r}: {e}") from None
    app.streaming = server
    app.observer.gauges.update({"streaming_tokens": lambda: len(server.tokens),
                                "streaming_sessions": lambda: len(server.sessions)})
    return server
