"""Exec, Attach and PortForward streams: a URL with a single-use token, then a streaming server.

The CRI calls (``cri/stream_*.py``) only validate and store the request (``tokens.py``) and return
``http://<streaming_address>/<kind>/<token>``; the client connects there and speaks the Kubernetes
remote-command or port-forward protocol over WebSocket or SPDY/3.1 (``server.py`` and below).
Nothing here imports aiohttp until the first streaming call: see ``server.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from criproxy.errors import StartupError
from criproxy.lifecycle import on_start, on_stop
from criproxy.streaming.server import StreamingServer

if TYPE_CHECKING:
    from criproxy.app import App

PART = "streaming"


def streaming_of(app: App) -> StreamingServer:
    """The App's streaming server, created on first use (the start step and handlers share it)."""
    server = app.parts.get(PART)
    if server is None:
        server = app.parts[PART] = StreamingServer(app, _serve)
    assert isinstance(server, StreamingServer)
    return server


async def _serve(server: StreamingServer) -> Any:
    """Start the HTTP side; aiohttp and the routes load here, with the first streaming URL."""
    from criproxy.streaming import handlers

    return await handlers.start(server)


async def new_url(app: App, kind: str, request: Any) -> str:
    return await streaming_of(app).new_url(kind, request)


@on_start(50)
async def _bind(app: App) -> None:
    """Bind the listening socket now, so a bad or taken streaming_address stops start-up with one line."""
    server = streaming_of(app)
    try:
        server.bind()
    except (ValueError, OSError) as e:
        raise StartupError(f"cannot serve streaming on {app.config.streaming_address!r}: {e}") from None
    app.observer.gauges.update({"streaming_tokens": lambda: len(server.tokens),
                                "streaming_sessions": lambda: len(server.sessions)})


@on_stop(50)
async def _stop(app: App) -> None:
    server = app.parts.get(PART)
    if isinstance(server, StreamingServer):
        await server.stop()
