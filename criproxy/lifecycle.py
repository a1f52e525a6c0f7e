"""Start-up and shutdown steps that feature modules register, run by server.py in order.

Start steps run after containerd answers and before the readiness gate opens: that is where each
feature recovers its cache from containerd (``cri/recover_sandboxes.py``, ``cri/container_recover.py``).
Stop steps run in reverse order after the gRPC server has drained. Registering by decorator keeps server.py free of
knowledge about individual features.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from criproxy.app import App

Step = Callable[["App"], Awaitable[None]]
_start: list[tuple[int, str, Step]] = []
_stop: list[tuple[int, str, Step]] = []


def on_start(order: int) -> Callable[[Step], Step]:
    """Register a start step; lower ``order`` runs first (10 stores, 20 recovery, 50 background)."""
    def deco(fn: Step) -> Step:
        _start.append((order, fn.__qualname__, fn))
        return fn
    return deco


def on_stop(order: int) -> Callable[[Step], Step]:
    """Register a stop step; higher ``order`` runs first (the reverse of start)."""
    def deco(fn: Step) -> Step:
        _stop.append((order, fn.__qualname__, fn))
        return fn
    return deco


def start_steps() -> list[Step]:
    return [fn for _, _, fn in sorted(_start, key=lambda t: (t[0], t[1]))]


def stop_steps() -> list[Step]:
    return [fn for _, _, fn in sorted(_stop, key=lambda t: (-t[0], t[1]))]
