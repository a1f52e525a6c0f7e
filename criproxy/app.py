"""The composition root's state: one App object every handler receives.

Handlers take ``(app, request)``; everything they need (config, the containerd connection, caches,
helpers) hangs off App, so there are no module-level singletons and tests can build their own.
Components are added as attributes by server.py at start-up; later features add their own fields
here (keep them typed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from criproxy.config import Config
from criproxy.containerd import Containerd
from criproxy.observability import Observer
from criproxy.state.container import ContainerStore
from criproxy.state.names import NameIndex
from criproxy.state.sandbox import SandboxStore


@dataclass
class App:
    """What a running criproxy is made of."""

    config: Config
    ctrd: Containerd
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    containerd_version: str = ""
    pod_cidr: str = ""
    # Lowest oom_score_adj put in a spec (None: values pass as asked); set at start, see
    # oci.spec.oom_score_floor.
    oom_score_floor: int | None = None
    observer: Observer = field(default_factory=Observer)
    sandboxes: SandboxStore = field(default_factory=SandboxStore)
    containers: ContainerStore = field(default_factory=ContainerStore)
    sandbox_names: NameIndex = field(default_factory=lambda: NameIndex("pod sandbox"))
    container_names: NameIndex = field(default_factory=lambda: NameIndex("container"))
    # Called with (app, sandbox_id, timeout_seconds) before a sandbox's pause task is stopped, and with
    # (app, sandbox_id) before its records are removed: the container module registers its "stop/remove
    # every container of this pod" here, so sandbox code does not import container code.
    on_sandbox_stop: list[Callable[[App, str, int], Awaitable[None]]] = field(default_factory=list)
    on_sandbox_remove: list[Callable[[App, str], Awaitable[None]]] = field(default_factory=list)
    # Components registered by feature modules at start-up (see criproxy.lifecycle), by name.
    parts: dict[str, Any] = field(default_factory=dict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task that is kept referenced and cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task
