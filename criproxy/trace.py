"""The translation trace: which containerd calls one CRI call caused.

The edge opens a Trace for every CRI call and puts it in a contextvar; the containerd wrapper appends
one Step per call it makes. Tasks spawned inside a handler inherit the contextvar, so concurrent
sub-steps land in the same trace. Recording is a perf_counter pair and a list append (a few µs).

A Step keeps a reference to the containerd request and the lease it ran under; the key arguments a
reader wants (container ID, snapshot key, digest, lease) are read out of them only when the trace is
kept for display (``key_args``), so a call whose trace nobody looks at pays nothing for them.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import Any

# Request fields worth showing, as paths into the request message, in display order. Every
# containerd request that names an object does so with one of these.
KEY_FIELDS: tuple[tuple[str, ...], ...] = (
    ("container_id",), ("exec_id",), ("container", "id"), ("id",), ("key",), ("parent",),
    ("name",), ("image", "name"), ("digest",), ("info", "digest"), ("ref",), ("snapshotter",),
)
MAX_ARG = 96          # characters of one shown value (a digest is 71)
_paths_by_type: dict[type, tuple[tuple[str, ...], ...]] = {}


def _present_paths(msg: Any) -> tuple[tuple[str, ...], ...]:
    """The KEY_FIELDS a message type has, found once per type from its descriptor."""
    cls = type(msg)
    paths = _paths_by_type.get(cls)
    if paths is None:
        found = []
        for path in KEY_FIELDS:
            desc = getattr(msg, "DESCRIPTOR", None)
            for part in path:
                fd = desc.fields_by_name.get(part) if desc is not None else None
                desc = fd.message_type if fd is not None else None
                if fd is None:
                    break
            else:
                found.append(path)
        paths = _paths_by_type[cls] = tuple(found)
    return paths


def key_args(request: Any, lease: str | None) -> dict[str, str]:
    """The identifying arguments of one containerd request: ``{"container_id": "…", "lease": "…"}``."""
    out: dict[str, str] = {}
    if isinstance(request, dict):          # a call recorded by hand (a raw stream) names its own
        out.update((k, str(v)[:MAX_ARG]) for k, v in request.items() if v)
    elif request is not None and hasattr(request, "DESCRIPTOR"):
        for path in _present_paths(request):
            value: Any = request
            for part in path:
                value = getattr(value, part)
            if isinstance(value, str) and value:
                out.setdefault(path[-1] if len(path) == 1 else ".".join(path), value[:MAX_ARG])
    if lease:
        out["lease"] = lease[:MAX_ARG]
    return out


@dataclass(slots=True)
class Step:
    """One containerd call: ``Tasks.Create`` took ``ms`` and ended with gRPC code ``code``."""

    service: str
    method: str
    ms: float
    code: str
    request: Any = None          # the containerd request (or a dict of its key arguments), read by key_args
    lease: str | None = None
    end: float = 0.0             # ms from the CRI call's start to this call's end (a timeline's x)


@dataclass(slots=True)
class Trace:
    """Everything one CRI call did in containerd, in the order the calls finished."""

    rpc: str
    started: float = field(default_factory=time.perf_counter)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    request: Any = None          # the CRI request and answer, for the pod/container a call concerns
    response: Any = None

    def record(self, service: str, method: str, started: float, code: str,
               request: Any = None, lease: str | None = None) -> None:
        now = time.perf_counter()
        self.steps.append(Step(service, method, (now - started) * 1000.0, code, request, lease,
                               (now - self.started) * 1000.0))

    def note(self, text: str) -> None:
        """Free-form progress (e.g. pull progress) shown beside the containerd calls."""
        self.notes.append(text)

    def render(self) -> str:
        total = (time.perf_counter() - self.started) * 1000.0
        calls = ", ".join(f"{s.service}.{s.method}[{s.code} {s.ms:.1f}ms]" for s in self.steps)
        notes = f" | {'; '.join(self.notes)}" if self.notes else ""
        return f"{self.rpc} {total:.1f}ms -> {calls or 'no containerd calls'}{notes}"


current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("criproxy_trace", default=None)


def note(text: str) -> None:
    """Add a note to the current CRI call's trace, if there is one."""
    tr = current.get()
    if tr is not None:
        tr.note(text)
