"""Pod sandbox records: what criproxy knows about each pod, rebuilt from containerd on restart.

State diagram (CRI defines only two states for a sandbox):

    (RunPodSandbox) ──▶ READY ──(pause task exits / StopPodSandbox)──▶ NOTREADY ──(Remove)──▶ gone

``network_torn_down`` remembers whether CNI DEL succeeded, so StopPodSandbox retries DEL until it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.protos import cri


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
    dir: Path | None = None            # per-sandbox files: hostname, hosts, resolv.conf, shm

    @property
    def ready(self) -> bool:
        return self.state == cri.SANDBOX_READY


class SandboxStore:
    """Sandboxes by ID, with CRI's "unique ID prefix" lookup."""

    def __init__(self) -> None:
        self._by_id: dict[str, SandboxRecord] = {}

    def add(self, rec: SandboxRecord) -> None:
        self._by_id[rec.id] = rec

    def remove(self, sandbox_id: str) -> None:
        self._by_id.pop(sandbox_id, None)

    def find(self, id_or_prefix: str) -> SandboxRecord | None:
        """The sandbox with this ID or unique ID prefix; None when there is none."""
        rec = self._by_id.get(id_or_prefix)
        if rec is not None or not id_or_prefix:
            return rec
        hits = [r for i, r in self._by_id.items() if i.startswith(id_or_prefix)]
        if len(hits) > 1:
            raise errors.InvalidArgument(f"sandbox ID prefix {id_or_prefix!r} is ambiguous")
        return hits[0] if hits else None

    def get(self, id_or_prefix: str) -> SandboxRecord:
        rec = self.find(id_or_prefix)
        if rec is None:
            raise errors.NotFound(f"pod sandbox {id_or_prefix!r} not found")
        return rec

    def all(self) -> list[SandboxRecord]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
