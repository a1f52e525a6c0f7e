"""SPDY/3.1 transport (not yet): clients are told to use WebSocket."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve_remote_command(request: web.Request, *args: Any) -> Any:
    raise web.HTTPBadRequest(text="SPDY is not supported yet; use a WebSocket client\n")


async def serve_port_forward(request: web.Request, *args: Any) -> Any:
    raise web.HTTPBadRequest(text="SPDY is not supported yet; use a WebSocket client\n")
