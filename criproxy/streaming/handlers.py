"""aiohttp handlers of the streaming server (imported only once the server starts serving).

Every handler consumes its token first, so a URL works once whatever happens next, then picks the
transport from the ``Upgrade`` header. The session runs in the handler's own task, which the server
tracks so shutdown can end the sessions still open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from criproxy import trace
from criproxy.protos import cri
from criproxy.streaming import websocket
from criproxy.streaming.attach import run_attach
from criproxy.streaming.exec import run_exec
from criproxy.streaming.portforward import serve_ws
from criproxy.streaming.server import KINDS, StreamingServer
from criproxy.streaming.streams import Options, Streams
from criproxy.streaming.tokens import Pending

log = logging.getLogger("criproxy.streaming")
SERVER = web.AppKey("streaming_server", StreamingServer)
Run = Callable[[Streams], Awaitable[None]]


def _consume(request: web.Request, kind: str) -> tuple[StreamingServer, Pending]:
    server = request.app[SERVER]
    pending = server.tokens.consume(request.match_info["token"], kind)
    if pending is None:
        raise web.HTTPNotFound(text="404 page not found\n")
    return server, pending


def _transport(request: web.Request) -> str:
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "websocket":
        return "websocket"
    if upgrade.startswith("spdy/"):
        return "spdy"
    raise web.HTTPBadRequest(text="streaming needs a WebSocket or SPDY/3.1 upgrade\n")


async def _tracked(server: StreamingServer, kind: str, coro: Awaitable[Any]) -> Any:
    """Run a session as a tracked task with its own translation trace (``stream:exec`` …), so the
    containerd calls a session makes show up in the debug log, /traces and /metrics like an RPC's."""
    task = asyncio.current_task()
    assert task is not None
    server.sessions.add(task)
    tr = trace.Trace(f"stream:{kind}")
    token = trace.current.set(tr)
    code = "OK"
    try:
        return await coro
    except BaseException as e:
        code = "CANCELLED" if isinstance(e, asyncio.CancelledError) else "UNKNOWN"
        raise
    finally:
        trace.current.reset(token)
        server.sessions.discard(task)
        server.app.observer.observe(tr, code, time.perf_counter() - tr.started)
        log.debug("trace %s", tr.render())


async def _remote_command(request: web.Request, server: StreamingServer, kind: str, opts: Options,
                          run: Run) -> Any:
    idle = server.app.config.streaming_idle_timeout
    if _transport(request) == "spdy":
        from criproxy.streaming import spdyexec

        return await _tracked(server, kind, spdyexec.serve_remote_command(request, opts, run, idle))
    return await _tracked(server, kind, websocket.serve(request, opts, run, idle))


async def handle_exec(request: web.Request) -> Any:
    server, pending = _consume(request, "exec")
    req: cri.ExecRequest = pending.request
    opts = Options(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty)
    return await _remote_command(request, server, "exec", opts, lambda s: run_exec(server.app, req, s))


async def handle_attach(request: web.Request) -> Any:
    server, pending = _consume(request, "attach")
    req: cri.AttachRequest = pending.request
    opts = Options(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty)
    return await _remote_command(request, server, "attach", opts, lambda s: run_attach(server.app, req, s))


def query_ports(request: web.Request) -> list[int]:
    """Ports a WebSocket client names in ``?port=`` (kubelet's V4 options) when the CRI request had none."""
    ports = []
    for value in request.query.getall("port", []):
        for part in value.split(","):
            if not part.strip().isdigit() or not 0 < int(part) < 65536:
                raise web.HTTPBadRequest(text=f"invalid port {part!r}\n")
            ports.append(int(part))
    return ports


async def handle_portforward(request: web.Request) -> Any:
    server, pending = _consume(request, "portforward")
    req: cri.PortForwardRequest = pending.request
    idle = server.app.config.streaming_idle_timeout
    if _transport(request) == "spdy":
        from criproxy.streaming import spdyforward

        return await _tracked(server, "portforward",
                              spdyforward.serve_port_forward(request, server.app, req.pod_sandbox_id, idle))
    ports = list(req.port) or query_ports(request)
    if not ports:
        raise web.HTTPBadRequest(text='query parameter "port" is required\n')
    return await _tracked(server, "portforward", serve_ws(request, server.app, req.pod_sandbox_id, ports, idle))


HANDLERS = {"exec": handle_exec, "attach": handle_attach, "portforward": handle_portforward}


async def start(server: StreamingServer) -> web.AppRunner:
    """Serve the routes on the server's bound socket (the first streaming URL calls this)."""
    assert server.sock is not None
    webapp = web.Application()
    webapp[SERVER] = server
    for kind in KINDS:
        webapp.router.add_route("*", f"/{kind}/{{token}}", HANDLERS[kind])
    runner = web.AppRunner(webapp, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.SockSite(runner, server.sock)
    await site.start()
    log.debug("streaming server started serving on %s", server.base_url)
    return runner
