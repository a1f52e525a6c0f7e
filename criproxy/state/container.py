"""Container records: what criproxy knows about each CRI container, rebuilt from containerd on restart.

State is derived from timestamps, as the CRI defines it (containerd's store/container/status.go):

    CreateContainer ──▶ CREATED ──(StartContainer)──▶ RUNNING ──(task exits / Stop)──▶ EXITED
                          │                                                        ▲
                          └──(StartContainer fails: reason StartError)─────────────┘
    UNKNOWN: recovery found a container whose task state it could not read.
    RemoveContainer takes any state to gone (killing a running task first).

A record has three parts: what was asked (``ContainerMetadata``, frozen at creation), what was
observed (``ContainerStatusData``, persisted; it changes only through the synchronous ``update_*``
methods below, so every change is atomic on the event loop and bumps the store's generation, which is
what lets ListContainers answer from a cached response while nothing changed) and the runtime handles
(``ContainerHandles``: stdio, events, the in-flight flags and cached answers, never persisted).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, ValuesView
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from criproxy import errors
from criproxy.inflight import InFlight
from criproxy.protos import cri, mount_pb
from criproxy.state.files import write_atomic
from criproxy.state.lookup import find_by_prefix

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM = "OOMKilled"
REASON_START_ERROR = "StartError"


@dataclass
class ContainerStatusData:
    """The mutable, persisted part of a container: what happened to it after creation."""

    started_at: int = 0        # unix ns
    finished_at: int = 0       # unix ns
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    pid: int = 0
    oom: bool = False
    unknown: bool = False
    resources: str = ""        # hex of serialized cri.LinuxContainerResources after an update

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ContainerStatusData:
        raw = json.loads(text)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


class StdioHandle(Protocol):
    """What the record's holders use of a running container's stdio (``criproxy.io.container.ContainerIO``)."""

    listeners: list[Callable[[bytes, bytes], None]]     # (stream name, data) for each piece of output
    stdin_fd: int                                       # our end of the stdin FIFO, -1 without stdin

    def close_stdin(self) -> None: ...
    async def wait_drained(self, timeout: float | None = None) -> bool: ...
    async def reopen_log(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self, timeout: float) -> bool: ...
    def remove(self) -> None: ...


@dataclass(frozen=True)
class ContainerMetadata:
    """What was asked: fixed at creation and kept in the containerd container's metadata extension."""

    id: str
    name: str                              # <ctr>_<pod>_<namespace>_<uid>_<attempt>
    sandbox_id: str
    config: cri.ContainerConfig
    created_at: int                        # unix ns
    image_name: str                        # what the CRI asked for (config.image.image), shown in status
    image_id: str                          # config digest
    image_ref: str                         # repo digest if known, else the image ID (status.image_ref)
    log_path: str = ""                     # absolute: sandbox log_directory / config.log_path
    stop_signal: str = "SIGTERM"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    process: str = ""                      # the OCI process of the spec as JSON (ExecSync builds on it)
    # Image volumes: (container path, host path, image ID, image ref) each (images/imagevolume.py).
    image_mounts: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(eq=False)
class ContainerHandles:
    """Runtime handles: what this process holds for a container, never persisted."""

    exited: asyncio.Event = field(default_factory=asyncio.Event)        # set once the exit is handled
    removing: bool = False
    starting: bool = False
    start_settled: asyncio.Event = field(default_factory=asyncio.Event)  # set when a start ends
    io: StdioHandle | None = None                    # the stdio FIFOs and log pump while the task lives
    mounts: list[mount_pb.Mount] | None = None       # rootfs mounts from Prepare (saves Snapshots.Mounts at start)
    snapshotter: str = ""                            # of its rootfs ("" = the global one): the pod handler's
    exit_task: asyncio.Task[None] | None = None      # the one handling of the exit
    # What the spec applies of the resources (ContainerStatus reports it), from create, update or
    # recovery; None when the spec is not known or not of our making (the request is reported then).
    applied: cri.LinuxContainerResources | None = None
    sandbox_config: cri.PodSandboxConfig | None = None   # the pod's config (None: the pod is gone)
    cached_item: cri.Container | None = None         # ListContainers entry, until the status changes
    cached_status: cri.ContainerStatusResponse | None = None   # ContainerStatus (not verbose), likewise
    cached_status_bytes: bytes | None = None         # the same, serialized
    # The runtime spec as containerd stores it (JSON), read once by a verbose ContainerStatus and
    # replaced by UpdateContainerResources' rewrite; None until someone asks.
    spec_json: bytes | None = None


@dataclass(eq=False)
class ContainerRecord:
    """One CRI container: what was asked (``meta``), what was observed (``status``, persisted in the
    status file, changed only through ``ContainerStore.update_*``) and the runtime ``handles``."""

    meta: ContainerMetadata
    status: ContainerStatusData = field(default_factory=ContainerStatusData)
    handles: ContainerHandles = field(default_factory=ContainerHandles)

    # Read-through names for the metadata every handler reads.
    @property
    def id(self) -> str:
        return self.meta.id

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def sandbox_id(self) -> str:
        return self.meta.sandbox_id

    @property
    def config(self) -> cri.ContainerConfig:
        return self.meta.config

    @property
    def created_at(self) -> int:
        return self.meta.created_at

    @property
    def log_path(self) -> str:
        return self.meta.log_path

    @property
    def state(self) -> int:
        s = self.status
        if s.unknown:
            return cri.CONTAINER_UNKNOWN
        if s.finished_at:
            return cri.CONTAINER_EXITED
        if s.started_at:
            return cri.CONTAINER_RUNNING
        return cri.CONTAINER_CREATED

    @property
    def running(self) -> bool:
        return self.state == cri.CONTAINER_RUNNING

    @property
    def may_run(self) -> bool:
        """Running, or UNKNOWN with a task that may still run: what stop and remove must kill."""
        return self.state in (cri.CONTAINER_RUNNING, cri.CONTAINER_UNKNOWN) and not self.status.finished_at

    @property
    def resources(self) -> cri.LinuxContainerResources:
        """The container's current Linux resources: the update if any, else the create config's."""
        if self.status.resources:
            return cri.LinuxContainerResources.FromString(bytes.fromhex(self.status.resources))
        return self.config.linux.resources


def exit_reason(status: ContainerStatusData) -> str:
    """CRI reason for an exited container: StartError and OOMKilled win over the exit code."""
    if status.reason:
        return status.reason
    if status.oom:
        return REASON_OOM
    return REASON_COMPLETED if status.exit_code == 0 else REASON_ERROR


class ContainerStore:
    """Containers by ID, with CRI's unique-prefix lookup and a generation counter for list caching."""

    def __init__(self, status_dir: Path | None = None) -> None:
        self._by_id: dict[str, ContainerRecord] = {}
        # Container IDs per sandbox ID, kept by add/remove: events and stats ask "this pod's
        # containers" for every call, which must not cost a scan of every container (O(pods²)).
        self._by_sandbox: dict[str, dict[str, None]] = {}
        self.generation = 0
        self.status_dir = status_dir
        # CreateContainer calls in flight, by CRI name: a kubelet retry awaits the first call's outcome.
        self.creating: InFlight[str, str] = InFlight()

    # -- membership ---------------------------------------------------------------------------
    def add(self, rec: ContainerRecord) -> None:
        old = self._by_id.get(rec.id)
        if old is not None:
            self._unindex(old)
        self._by_id[rec.id] = rec
        self._by_sandbox.setdefault(rec.sandbox_id, {})[rec.id] = None
        self.generation += 1

    def remove(self, container_id: str) -> None:
        rec = self._by_id.pop(container_id, None)
        if rec is not None:
            self._unindex(rec)
            self.generation += 1
        if self.status_dir is not None:
            try:
                (self.status_dir / container_id).with_suffix(".json").unlink()
            except FileNotFoundError:
                pass

    def find(self, id_or_prefix: str) -> ContainerRecord | None:
        return find_by_prefix(self._by_id, id_or_prefix, "container")

    def get(self, id_or_prefix: str) -> ContainerRecord:
        rec = self.find(id_or_prefix)
        if rec is None:
            raise errors.NotFound(f"container {id_or_prefix!r} not found")
        return rec

    def all(self) -> list[ContainerRecord]:
        return list(self._by_id.values())

    def values(self) -> ValuesView[ContainerRecord]:
        return self._by_id.values()

    def for_sandbox(self, sandbox_id: str) -> list[ContainerRecord]:
        """This sandbox's containers (full sandbox ID), in creation order, from the index."""
        return [self._by_id[i] for i in self._by_sandbox.get(sandbox_id, ())]

    def _unindex(self, rec: ContainerRecord) -> None:
        ids = self._by_sandbox.get(rec.sandbox_id)
        if ids is not None:
            ids.pop(rec.id, None)
            if not ids:
                del self._by_sandbox[rec.sandbox_id]

    def __len__(self) -> int:
        return len(self._by_id)

    # -- status changes (synchronous, persisted) ----------------------------------------------
    def update_started(self, rec: ContainerRecord, started_at: int, pid: int) -> None:
        rec.status.started_at, rec.status.pid = started_at, pid
        self._changed(rec)

    def update_exited(self, rec: ContainerRecord, finished_at: int, exit_code: int,
                      reason: str = "", message: str = "") -> bool:
        """Record the exit once; a second report (Wait and the event both fire) changes nothing."""
        if rec.status.finished_at:
            return False
        s = rec.status
        # A quick process can exit before StartContainer has read the clock: never finish before start.
        s.finished_at, s.exit_code, s.pid, s.unknown = max(finished_at, s.started_at), exit_code, 0, False
        if reason:
            s.reason, s.message = reason, message
        self._changed(rec)
        return True

    def update_message(self, rec: ContainerRecord, message: str) -> None:
        """Say why (a task that vanished): shown in ContainerStatus.message."""
        rec.status.message = message
        self._changed(rec)

    def update_unknown(self, rec: ContainerRecord, unknown: bool, message: str = "") -> None:
        """The task's state could not be read (UNKNOWN), or can again."""
        if rec.status.unknown != unknown:
            rec.status.unknown = unknown
            rec.status.message = message if unknown else ""
            self._changed(rec)

    def update_oom(self, rec: ContainerRecord) -> None:
        if not rec.status.oom:
            rec.status.oom = True
            self._changed(rec)

    def update_resources(self, rec: ContainerRecord, res: cri.LinuxContainerResources) -> None:
        rec.status.resources = res.SerializeToString().hex()
        self._changed(rec)

    def load_status(self, container_id: str) -> ContainerStatusData | None:
        """The persisted status of a container (recovery); None when nothing was written."""
        if self.status_dir is None:
            return None
        try:
            return ContainerStatusData.from_json((self.status_dir / f"{container_id}.json").read_text())
        except (OSError, ValueError, TypeError):
            return None

    def _changed(self, rec: ContainerRecord) -> None:
        self.generation += 1
        h = rec.handles
        h.cached_item = h.cached_status = h.cached_status_bytes = None
        self.persist(rec)

    def persist(self, rec: ContainerRecord) -> None:
        """Write the status beside criproxy's root (fsynced, atomic rename) so a restart recovers it.

        containerd keeps no CRI status (the CRI plugin keeps a status file per container too): the
        task and its exit code are deleted after the exit is handled.
        """
        if self.status_dir is None:
            return
        self.status_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.status_dir / f"{rec.id}.json", rec.status.to_json())
