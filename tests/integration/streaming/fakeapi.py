"""Just enough of a Kubernetes API server for a real ``kubectl exec/attach/port-forward`` (tests only).

kubectl reads the pod, then upgrades ``…/pods/<name>/exec|attach|portforward`` to WebSocket or SPDY.
Where a real API server would ask the kubelet, which asks the runtime for a URL and proxies to it,
this one makes the CRI call itself (``url_for``) and splices the raw connection to criproxy's
streaming server with the request's path replaced by the URL's. So kubectl's own Go client
(client-go, spdystream, gorilla/websocket) talks to criproxy byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

UrlFor = Callable[[str, dict[str, list[str]]], str]     # (kind, query) -> streaming URL
DISCOVERY = {
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
         "verbs": ["get", "list"]},
        *({"name": f"pods/{sub}", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["create", "get"]}
          for sub in ("exec", "attach", "portforward"))]},
}


class FakeApiServer:
    def __init__(self, pod_name: str, container: str, url_for: UrlFor) -> None:
        self.pod_name, self.container, self.url_for = pod_name, container, url_for
        self.server: asyncio.Server | None = None
        self.port = 0
        self.requests: list[str] = []

    async def __aenter__(self) -> FakeApiServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _pod(self) -> bytes:
        return json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.pod_name, "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": self.container, "image": "busybox"}]},
            "status": {"phase": "Running"}}).encode()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            w.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        self.requests.append(f"{method} {target}")
        u = urlsplit(target)
        kind = u.path.rsplit("/", 1)[-1]
        if kind in ("exec", "attach", "portforward"):
            url = await asyncio.to_thread(self.url_for, kind, parse_qs(u.query))
            await _splice(head, url, r, w)
        elif u.path.endswith(f"/pods/{self.pod_name}"):
            _respond(w, 200, self._pod())
        elif u.path in DISCOVERY:
            _respond(w, 200, json.dumps(DISCOVERY[u.path]).encode())
        else:
            _respond(w, 404, b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}')
        with contextlib.suppress(ConnectionError):
            await w.drain()
        w.close()


def _respond(w: asyncio.StreamWriter, status: int, body: bytes) -> None:
    w.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode() + body)


async def _splice(head: bytes, url: str, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Forward the upgrade request to ``url`` (path and Host rewritten) and pipe both ways."""
    target = urlsplit(url)
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0]
    out = [f"{method} {target.path} HTTP/1.1", f"Host: {target.netloc}"]
    out += [line for line in lines[1:] if line and not line.lower().startswith("host:")]
    ur, uw = await asyncio.open_connection(target.hostname, target.port)
    uw.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError):
            dst.write_eof()

    await asyncio.gather(pipe(r, uw), pipe(ur, w))
    uw.close()
