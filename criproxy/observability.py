"""Metrics and the live translation trace, served on a private unix socket.

Every CRI call ends in ``Observer.observe``: a count per (RPC, status code), a latency histogram per
RPC, counts of the containerd calls its trace holds, and the trace itself in a ring of recent calls.
That is a few dict updates per call, cheap enough for the kubelet's once-a-second List calls.

The debug server answers plain HTTP GETs on ``<state>/debug.sock`` (mode 0600, so only root gets
in), without aiohttp, so an idle criproxy does not pay for an HTTP stack it rarely uses:

    curl --unix-socket /run/criproxy/debug.sock http://criproxy/metrics   # Prometheus text format
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/traces    # recent traces, JSON
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/events    # recent, then live (SSE)
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/cache     # pods, containers, images
    curl --unix-socket /run/criproxy/debug.sock http://criproxy/          # a small HTML page

``/events`` is a server-sent-event stream: the ring's traces, then each new one as it is kept. Every
subscriber has its own bounded queue; a reader that falls behind loses its oldest entries (counted in
``criproxy_trace_events_dropped``), never slowing a CRI call. ``criproxy trace`` and ``criproxy ui``
(criproxy/ui/) read these endpoints.
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from criproxy.trace import Trace, key_args

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


SUBSCRIBER_QUEUE = 500      # traces one /events reader may fall behind before its oldest are dropped
MAX_SUBSCRIBERS = 16
MAX_MESSAGE = 2000          # characters of an error message kept with a trace


class Subscriber:
    """One live reader of kept traces: a bounded queue (drop-oldest) and a wake-up."""

    __slots__ = ("dropped", "queue", "wake")

    def __init__(self) -> None:
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=SUBSCRIBER_QUEUE)
        self.wake = asyncio.Event()
        self.dropped = 0


def _ids(tr: Trace) -> tuple[str, str]:
    """The pod sandbox and container a CRI call concerns, from its request or (for the calls that
    create one) its answer."""
    pod = ctr = ""
    for msg in (tr.request, tr.response):
        if msg is None or isinstance(msg, bytes) or not hasattr(msg, "DESCRIPTOR"):
            continue
        fields = msg.DESCRIPTOR.fields_by_name
        if not pod and "pod_sandbox_id" in fields:
            pod = str(msg.pod_sandbox_id)
        if not ctr and "container_id" in fields:
            ctr = str(msg.container_id)
    return pod, ctr


class Observer:
    """Counters for CRI calls and the containerd calls they made, plus recent traces."""

    def __init__(self, keep: int = 200) -> None:
        self.rpc_codes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.rpc_latency: dict[str, Histogram] = collections.defaultdict(Histogram)
        self.containerd_calls: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.subscribers: set[Subscriber] = set()
        self.seq = 0
        self.dropped = 0
        self.gauges["trace_events_dropped"] = lambda: self.dropped
        self.gauges["trace_subscribers"] = lambda: len(self.subscribers)

    def observe(self, tr: Trace, code: str, seconds: float, message: str = "") -> None:
        self.rpc_codes[(tr.rpc, code)] += 1
        self.rpc_latency[tr.rpc].add(seconds)
        for s in tr.steps:
            self.containerd_calls[(s.service, s.method, s.code)] += 1
        if tr.steps or code != "OK":  # keep the interesting ones; List* from the cache make none
            self.keep(tr, code, seconds, message)

    def keep(self, tr: Trace, code: str, seconds: float, message: str = "") -> None:
        """Put one finished call in the ring and hand it to every live reader (never waits)."""
        self.seq += 1
        pod, ctr = _ids(tr)
        entry: dict[str, Any] = {
            "id": self.seq, "at": round(time.time(), 3), "rpc": tr.rpc, "code": code,
            "ms": round(seconds * 1000, 3), "pod": pod, "container": ctr, "error": message[:MAX_MESSAGE],
            # [service, method, code, ms, key arguments, ms from the CRI call's start to its end]
            "steps": [[s.service, s.method, s.code, round(s.ms, 3), key_args(s.request, s.lease), round(s.end, 3)]
                      for s in tr.steps],
            "notes": list(tr.notes)}
        self.recent.append(entry)
        for sub in self.subscribers:
            if len(sub.queue) == sub.queue.maxlen:
                sub.dropped += 1
                self.dropped += 1
            sub.queue.append(entry)
            sub.wake.set()

    def subscribe(self) -> Subscriber | None:
        """A new live reader, primed with the ring; None when MAX_SUBSCRIBERS already read."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        sub = Subscriber()
        sub.queue.extend(self.recent)
        sub.wake.set()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

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
            + html.escape(", ".join(f"{s[0]}.{s[1]} [{s[2]} {s[3]}ms]" for s in t["steps"]))
            + "</td></tr>" for t in reversed(self.recent))
        gauges = "".join(f"<li>{html.escape(k)}: {fn()}</li>" for k, fn in sorted(self.gauges.items()))
        return ("<!doctype html><title>criproxy</title><h1>criproxy</h1><h2>cache</h2><ul>" + gauges + "</ul>"
                "<h2>recent CRI calls and the containerd calls they made</h2><table border=1>"
                "<tr><th>CRI call</th><th>code</th><th>ms</th><th>containerd calls</th></tr>" + rows + "</table>")


KEEPALIVE = 15.0            # seconds between SSE comments on an idle /events stream
WRITE_TIMEOUT = 10.0        # a reader whose socket takes no data this long is dropped


class DebugServer:
    """A tiny GET-only HTTP server on a unix socket (mode 0600).

    ``cache`` gives the /cache answer (pods, containers, images, recent events); the composition
    root supplies it, as this layer knows no stores.
    """

    def __init__(self, observer: Observer, path: Path, cache: Callable[[], dict[str, Any]] | None = None):
        self.observer, self.path = observer, path
        self.cache = cache
        self.server: asyncio.Server | None = None
        self.streams: set[asyncio.StreamWriter] = set()    # open /events readers, closed by stop()

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
        for writer in list(self.streams):      # a live reader would otherwise hold wait_closed
            writer.close()
        for sub in self.observer.subscribers:  # and their loops notice now, not at the next keepalive
            sub.wake.set()
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
        if target == "/cache":
            return "200 OK", "application/json", json.dumps(self.cache() if self.cache else {})
        if target == "/":
            return "200 OK", "text/html; charset=utf-8", self.observer.page()
        return "404 Not Found", "text/plain", "not found\n"

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        """Stream kept traces as server-sent events until the reader goes away."""
        sub = self.observer.subscribe()
        if sub is None:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                         b"Connection: close\r\n\r\ntoo many /events readers\n")
            await writer.drain()
            return
        self.streams.add(writer)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Connection: close\r\n\r\n")
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), KEEPALIVE)
                sub.wake.clear()
                if writer.is_closing():
                    return
                if not sub.queue:
                    writer.write(b": keepalive\n\n")
                n = 0
                while sub.queue and n < 100:       # bounded work per wake-up
                    writer.write(b"data: " + json.dumps(sub.queue.popleft()).encode() + b"\n\n")
                    n += 1
                if sub.queue:
                    sub.wake.set()
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        finally:
            self.streams.discard(writer)
            self.observer.unsubscribe(sub)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, target, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            target = target.split("?", 1)[0]
            if method == "GET" and target == "/events":
                await self._events(writer)
                return
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
