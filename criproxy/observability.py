"""Metrics and the live translation trace, served on a private unix socket.

Every CRI call ends in ``Observer.observe``: a count per (RPC, status code), a latency histogram per
RPC, counts of the containerd calls its trace holds, and the trace itself in a ring of recent calls.
That is a few dict updates per call, cheap enough for the kubelet's once-a-second List calls.

The debug server answers plain HTTP GETs on ``<state>/debug.sock`` (mode 0600, so only root gets
in), without aiohttp, so an idle criproxy does not pay for an HTTP stack it rarely uses:

    curl --unix-socket /run/criproxy/debug.sock http://criproxy/metrics   # Prometheus text format
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/traces    # recent traces, JSON
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/          # a small HTML page
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import html
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from criproxy.trace import Trace

log = logging.getLogger("criproxy.observability")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    __slots__ = ("counts", "n", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Observer:
    """Counters for CRI calls and the containerd calls they made, plus recent traces."""

    def __init__(self, keep: int = 200) -> None:
        self.rpc_codes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.rpc_latency: dict[str, Histogram] = collections.defaultdict(Histogram)
        self.containerd_calls: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.recent: collections.deque[dict[str, object]] = collections.deque(maxlen=keep)
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe(self, tr: Trace, code: str, seconds: float) -> None:
        self.rpc_codes[(tr.rpc, code)] += 1
        self.rpc_latency[tr.rpc].add(seconds)
        for s in tr.steps:
            self.containerd_calls[(s.service, s.method, s.code)] += 1
        if tr.steps or code != "OK":  # keep the interesting ones; List* from the cache make none
            self.recent.append({"rpc": tr.rpc, "code": code, "ms": round(seconds * 1000, 3),
                                "steps": [[s.service, s.method, s.code, round(s.ms, 3)] for s in tr.steps],
                                "notes": list(tr.notes)})

    def prometheus(self) -> str:
        out = ["# HELP criproxy_cri_requests_total CRI calls by method and gRPC status code.",
               "# TYPE criproxy_cri_requests_total counter"]
        out += [f'criproxy_cri_requests_total{{method="{m}",code="{c}"}} {n}'
                for (m, c), n in sorted(self.rpc_codes.items())]
        out += ["# HELP criproxy_cri_request_seconds CRI call latency.",
                "# TYPE criproxy_cri_request_seconds histogram"]
        for m, h in sorted(self.rpc_latency.items()):
            acc = 0
            for le, cnt in zip((*BUCKETS, "+Inf"), h.counts, strict=True):
                acc += cnt
                out.append(f'criproxy_cri_request_seconds_bucket{{method="{m}",le="{le}"}} {acc}')
            out.append(f'criproxy_cri_request_seconds_sum{{method="{m}"}} {h.total:.6f}')
            out.append(f'criproxy_cri_request_seconds_count{{method="{m}"}} {h.n}')
        out += ["# HELP criproxy_containerd_calls_total containerd calls made on behalf of CRI calls.",
                "# TYPE criproxy_containerd_calls_total counter"]
        out += [f'criproxy_containerd_calls_total{{service="{s}",method="{m}",code="{c}"}} {n}'
                for (s, m, c), n in sorted(self.containerd_calls.items())]
        for name, fn in sorted(self.gauges.items()):
            out += [f"# TYPE criproxy_{name} gauge", f"criproxy_{name} {fn()}"]
        return "\n".join(out) + "\n"

    def page(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(t['rpc']))}</td><td>{t['code']}</td><td>{t['ms']}</td><td>"
            + html.escape(", ".join(f"{s[0]}.{s[1]} [{s[2]} {s[3]}ms]" for s in t["steps"]))  # type: ignore[attr-defined]
            + "</td></tr>" for t in reversed(self.recent))
        gauges = "".join(f"<li>{html.escape(k)}: {fn()}</li>" for k, fn in sorted(self.gauges.items()))
        return ("<!doctype html><title>criproxy</title><h1>criproxy</h1><h2>cache</h2><ul>" + gauges + "</ul>"
                "<h2>recent CRI calls and the containerd calls they made</h2><table border=1>"
                "<tr><th>CRI call</th><th>code</th><th>ms</th><th>containerd calls</th></tr>" + rows + "</table>")


class DebugServer:
    """A tiny GET-only HTTP server on a unix socket (mode 0600)."""

    def __init__(self, observer: Observer, path: Path):
        self.observer, self.path = observer, path
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _route(self, target: str) -> tuple[str, str, str]:
        if target == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", self.observer.prometheus()
        if target == "/traces":
            return "200 OK", "application/json", json.dumps(list(self.observer.recent))
        if target == "/":
            return "200 OK", "text/html; charset=utf-8", self.observer.page()
        return "404 Not Found", "text/plain", "not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, target, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, ctype, body = self._route(target) if method == "GET" else ("405 Method Not Allowed",
                                                                             "text/plain", "GET only\n")
            data = body.encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                         "Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()
