"""The translation trace: which containerd calls one CRI call caused.

The edge opens a Trace for every CRI call and puts it in a contextvar; the containerd wrapper appends
one Step per call it makes. Tasks spawned inside a handler inherit the contextvar, so concurrent
sub-steps land in the same trace. Recording is a perf_counter pair and a list append (a few µs).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Step:
    """One containerd call: ``Tasks.Create`` took ``ms`` and ended with gRPC code ``code``."""

    service: str
    method: str
    ms: float
    code: str


@dataclass(slots=True)
class Trace:
    """Everything one CRI call did in containerd, in the order the calls finished."""

    rpc: str
    started: float = field(default_factory=time.perf_counter)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, service: str, method: str, started: float, code: str) -> None:
        self.steps.append(Step(service, method, (time.perf_counter() - started) * 1000.0, code))

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
