"""Pod sandbox records: what criproxy knows about each pod, rebuilt from containerd on restart.

State diagram (CRI defines only two states for a sandbox):

    (RunPodSandbox) ──▶ READY ──(pause task exits / StopPodSandbox)──▶ NOTREADY ──(Remove)──▶ gone

A record enters the store only once RunPodSandbox has finished (the pause task runs), so List and
Status never show a half-built pod. ``network_torn_down`` remembers whether CNI DEL succeeded, so
StopPodSandbox retries DEL until it does. State changes go through ``SandboxStore.set_state`` (or
``add``/``remove``), which bumps ``generation`` so list answers can be cached until something changes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.protos import containers_pb, cri
from criproxy.state.lookup import find_by_prefix


@dataclass
class SandboxRecord:
    id: str
    name: str                         # <pod>_<namespace>_<uid>_<attempt>
    config: cri.PodSandboxConfig
    runtime_handler: str
    created_at: int                   # unix nanoseconds
    state: int = cri.SANDBOX_NOTREADY
    netns_path: str = ""              # "" for host network
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    cni_result: dict[str, Any] | None = None
    network_torn_down: bool = False
    pid: int = 0
    dir: Path | None = None            # per-sandbox files: hostname, hosts, resolv.conf
    state_dir: Path | None = None      # per-sandbox volatile files: the /dev/shm tmpfs
    runtime_type: str = "io.containerd.runc.v2"
    image: str = ""                    # the pause image's containerd record name
    exit_status: int | None = None     # the pause process's, once it has exited
    exited_at: int = 0                 # unix nanoseconds
    # One in-flight StopPodSandbox / RemovePodSandbox per sandbox: concurrent callers await it.
    stopping: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)
    removing: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)
    stop_started: float = field(default=0.0, repr=False, compare=False)     # monotonic, of ``stopping``
    remove_started: float = field(default=0.0, repr=False, compare=False)   # monotonic, of ``removing``
    # The pause container's runtime name and options, read once by CreateContainer: a pod's
    # containers run on the same.
    runtime: containers_pb.Container.Runtime | None = field(default=None, repr=False, compare=False)
    # PodSandboxStatus' answer without its timestamp, serialized, and the key it was built for
    # (store generations and the network facts it shows; cri/sandbox_status.py).
    status_answer: tuple[tuple[int, int, bool, str], bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def ready(self) -> bool:
        return self.state == cri.SANDBOX_READY

    @property
    def host_network(self) -> bool:
        return namespace_options(self.config).network == cri.NODE

    @property
    def hostname_path(self) -> Path | None:
        """The pod's /etc/hostname file (containers bind-mount it)."""
        return self.dir / "hostname" if self.dir else None

    @property
    def hosts_path(self) -> Path | None:
        """The pod's /etc/hosts file."""
        return self.dir / "hosts" if self.dir else None

    @property
    def resolv_conf_path(self) -> Path | None:
        """The pod's /etc/resolv.conf file."""
        return self.dir / "resolv.conf" if self.dir else None

    @property
    def shm_path(self) -> Path | None:
        """The pod's shared /dev/shm (a tmpfs; for host IPC this is the host's /dev/shm)."""
        if namespace_options(self.config).ipc == cri.NODE:
            return Path("/dev/shm")
        return self.state_dir / "shm" if self.state_dir else None


def namespace_options(config: cri.PodSandboxConfig) -> cri.NamespaceOption:
    """The pod's namespace options (all POD when the config says nothing)."""
    return config.linux.security_context.namespace_options


class SandboxStore:
    """Sandboxes by ID, with CRI's "unique ID prefix" lookup."""

    def __init__(self) -> None:
        self._by_id: dict[str, SandboxRecord] = {}
        self.generation = 0

    def add(self, rec: SandboxRecord) -> None:
        self._by_id[rec.id] = rec
        self.generation += 1

    def remove(self, sandbox_id: str) -> None:
        if self._by_id.pop(sandbox_id, None) is not None:
            self.generation += 1

    def set_state(self, rec: SandboxRecord, state: int) -> None:
        """The one way a sandbox changes state (keeps list caches honest)."""
        if rec.state != state:
            rec.state = state
            self.generation += 1

    def set_exited(self, rec: SandboxRecord, exit_status: int, exited_at: int) -> None:
        """The pause process's exit, as its watcher saw it (the state follows via ``set_state``)."""
        rec.exit_status, rec.exited_at = exit_status, exited_at
        self.generation += 1

    def find(self, id_or_prefix: str) -> SandboxRecord | None:
        """The sandbox with this ID or unique ID prefix; None when there is none."""
        return find_by_prefix(self._by_id, id_or_prefix, "sandbox")

    def get(self, id_or_prefix: str) -> SandboxRecord:
        rec = self.find(id_or_prefix)
        if rec is None:
            raise errors.NotFound(f"pod sandbox {id_or_prefix!r} not found")
        return rec

    def all(self) -> list[SandboxRecord]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass
class SandboxListCache:
    """Everything ListPodSandbox answers need, valid for one store generation."""

    generation: int
    pairs: list[tuple[SandboxRecord, cri.PodSandbox]]
    serialized: dict[object, bytes] = field(default_factory=dict)   # None (all) or a state → bytes
