"""``criproxy ui``: a local web page showing CRI calls as they arrive, each expandable into the
containerd calls it made, beside criproxy's in-memory cache.

A separate process that proxies the debug socket (so it needs root, as the socket is 0600) and
serves on loopback only unless ``--allow-remote`` is given. Every request must carry the random
token printed in the URL, so another local user who finds the port still cannot read the page. The
page is one self-contained file (no CDN, no external assets): it works without network access.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import aiohttp
from aiohttp import web

from criproxy.ui import debugclient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:0",
                   help="host:port to serve on (default 127.0.0.1 and a free port)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --listen address other than loopback (the token still guards the page)")
    p.add_argument("--debug-socket", type=Path, default=None,
                   help=f"criproxy's debug socket (default {debugclient.default_socket()})")


def parse_listen(listen: str, allow_remote: bool) -> tuple[str, int]:
    """``host:port`` → (host, port); a host that is not loopback needs ``allow_remote``."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen {listen!r}: want host:port, e.g. 127.0.0.1:8089")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ValueError(f"--listen {listen!r}: the host must be an IP address") from None
    if not loopback and not allow_remote:
        raise ValueError(f"--listen {listen!r} is not a loopback address: the page shows every pod and "
                         "container; pass --allow-remote to serve it there anyway")
    return host, int(port_text)


def page() -> str:
    return resources.files("criproxy.ui").joinpath("page.html").read_text()


def build_app(sock: Path, token: str) -> web.Application:
    """The page and its three data routes, each behind the token."""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not secrets.compare_digest(request.query.get("token", ""), token):
            return web.Response(status=403, text="forbidden: open the URL criproxy ui printed (it has the token)\n")
        resp = await handler(request)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'unsafe-inline'; "
                                                   "style-src 'unsafe-inline'; img-src data:")
        return resp

    app = web.Application(middlewares=[check_token])
    html = page()

    async def index(request: web.Request) -> web.StreamResponse:
        return web.Response(text=html, content_type="text/html")

    async def proxy_json(request: web.Request) -> web.StreamResponse:
        target = "/traces" if request.path == "/api/traces" else "/cache"
        try:
            async with debugclient.session(sock) as http, http.get(
                    debugclient.BASE + target, timeout=aiohttp.ClientTimeout(total=10)) as up:
                body = await up.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return web.Response(status=502, text=f"criproxy's debug socket: {e}\n")
        return web.Response(body=body, content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        try:
            async with debugclient.session(sock) as http, http.get(debugclient.BASE + "/events") as up:
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
        except (aiohttp.ClientError, OSError) as e:
            if not resp.prepared:
                return web.Response(status=502, text=f"criproxy's debug socket: {e}\n")
        return resp

    app.router.add_get("/", index)
    app.router.add_get("/api/traces", proxy_json)
    app.router.add_get("/api/cache", proxy_json)
    app.router.add_get("/api/events", events)
    return app


async def serve(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen, args.allow_remote)
    except ValueError as e:
        print(f"criproxy: {e}", file=sys.stderr)
        return 2
    sock = args.debug_socket or debugclient.default_socket()
    token = secrets.token_urlsafe(24)
    # A page's /api/events stream ends when the browser goes away (handler_cancellation), and a stop
    # does not wait on open streams for long.
    runner = web.AppRunner(build_app(sock, token), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
    try:
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"criproxy ui: http://{shown}:{bound[1]}/?token={token}", flush=True)
        print(f"reading {sock}; Ctrl-C stops", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):     # SIGINT too: a background job ignores it otherwise
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
    except OSError as e:
        print(f"criproxy: cannot serve on {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        await runner.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
