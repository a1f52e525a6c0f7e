"""The composition root's state: one App object every handler receives.

Handlers take ``(app, request)``; everything they need (config, the containerd connection, stores,
caches) hangs off App, so there are no module-level singletons and tests can build their own. Every
piece of state a call keeps for later is a typed field below with a line saying what it is and who
owns it, the way containerd's ``criService`` lists its stores; every cache that can grow is bounded
(an LRU) or pruned to what exists.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from criproxy.config import Config
from criproxy.containerd import Containerd
from criproxy.events.relay import Relay
from criproxy.inflight import InFlight
from criproxy.nri.adaptation import Adaptation
from criproxy.observability import Observer
from criproxy.protos import cri
from criproxy.state.container import ContainerStore
from criproxy.state.image import ImageState, LocalImage
from criproxy.state.names import NameIndex
from criproxy.state.sandbox import SandboxListCache, SandboxStore
from criproxy.translate.stats import CpuSample


class StreamURLs(Protocol):
    """What the Stream* handlers need of the streaming server (``streaming/server.py``)."""

    async def new_url(self, kind: str, request: Any) -> str: ...


@dataclass(eq=False)
class App:
    """What a running criproxy is made of."""

    config: Config
    ctrd: Containerd
    ready: asyncio.Event = field(default_factory=asyncio.Event)     # opens when start-up recovery is done
    started_at: float = field(default_factory=time.time)
    containerd_version: str = ""
    pod_cidr: str = ""                                             # from UpdateRuntimeConfig, persisted
    # Lowest oom_score_adj put in a spec (None: values pass as asked); set at start, see
    # oci.spec.oom_score_floor.
    oom_score_floor: int | None = None
    # Whether recursive read-only mounts work, per runtime handler name ("" = the default); probed at
    # start (oci/rro.py), absent = no.
    rro_support: dict[str, bool] = field(default_factory=dict)
    # Image volume views: acquire/release one at a time, and per image the CreateContainer calls that
    # hold one before their record exists (images/imagevolume.py).
    # Each runtime handler's base OCI spec by CRI name ("" = the default), loaded at start (oci/basespec.py).
    base_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_volume_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    image_volume_pending: collections.Counter[str] = field(default_factory=collections.Counter)
    observer: Observer = field(default_factory=Observer)           # metrics and recent traces
    runtime_ready_at: float | None = None                          # Status: last containerd answer (monotonic)
    # -- stores (state/) -----------------------------------------------------------------------------
    sandboxes: SandboxStore = field(default_factory=SandboxStore)
    containers: ContainerStore = field(default_factory=ContainerStore)
    sandbox_names: NameIndex = field(default_factory=lambda: NameIndex("pod sandbox"))
    container_names: NameIndex = field(default_factory=lambda: NameIndex("container"))
    images: ImageState = field(default_factory=ImageState)         # pulls in flight, registry session, tokens
    # -- services --------------------------------------------------------------------------------------
    relay: Relay = field(default_factory=Relay)                    # containerd events in, CRI events out
    streaming: StreamURLs | None = None                            # set by server.py once bound
    nri: Adaptation | None = None                                  # NRI plugins, when nri_enable (cri/nri_bridge.py)
    # -- what one RPC keeps for the next (owner in brackets) -----------------------------------------
    # RunPodSandbox calls in flight by pod name: a retry joins the first (cri/sandbox_run.py).
    sandbox_runs: InFlight[str, str] = field(default_factory=InFlight)
    # The pause image as resolved for config.pause_image (podsandbox/pause.py).
    pause_image: tuple[str, LocalImage] | None = None
    # CreateContainer's lease and when it was made, rotated every 12 h (cri/container_create.py).
    create_lease: tuple[str, int] | None = None
    # Held while criproxy's default AppArmor profile is being loaded, so one create loads it
    # (container/spec.py, oci/apparmor.py).
    apparmor_load: asyncio.Lock = field(default_factory=asyncio.Lock)
    # ListPodSandbox's items and answers for one store generation (cri/sandbox_list.py).
    sandbox_list: SandboxListCache | None = None
    # ListContainers' serialized answers by state for one store generation (cri/container_list.py).
    container_list: tuple[int, dict[int | None, bytes]] | None = None
    # Last CPU sample per sandbox and per container, for usage_nano_cores; pruned to live records
    # (cri/sandbox_stats.py, cri/container_stats.py).
    sandbox_cpu: dict[str, CpuSample] = field(default_factory=dict)
    container_cpu: dict[str, CpuSample] = field(default_factory=dict)
    # Writable-layer usage per container with its monotonic time, kept FS_TTL; pruned to live containers
    # (cri/container_stats.py).
    container_fs: dict[str, tuple[float, cri.FilesystemUsage]] = field(default_factory=dict)
    # The snapshotter's root dir as containerd reports it, asked once (cri/container_stats.py).
    snapshot_root: str | None = None
    # Read ends of the exec FIFOs a killed criproxy left, held open until those execs are reaped
    # (container/recover.py).
    exec_fifos: list[int] = field(default_factory=list)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that is kept referenced and cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task
