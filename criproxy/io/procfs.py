"""Process and file-descriptor counts of a container's cgroup, and a filesystem's size: blocking reads
for one worker thread per metrics call (never on the event loop).

A container's cgroup is found from its task's ``/proc/<pid>/cgroup``: on a cgroup v2 host the ``0::``
line under /sys/fs/cgroup; on a v1 (or hybrid) host the ``pids`` controller's line under
/sys/fs/cgroup/pids (the controller whose ``cgroup.procs`` lists every process of the container). The
paths in that file are relative to the cgroup namespace of the reader, and criproxy runs in the host's.
The processes are the cgroup's ``cgroup.procs``; the descriptors, the entries of each one's
/proc/<pid>/fd. Everything is bounded: the procs file's size, the processes counted, the descriptors
listed per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_FILE = 1 << 20          # bytes read of /proc/<pid>/cgroup or cgroup.procs
MAX_PROCS = 4096            # processes counted per container
MAX_FDS = 1 << 20           # descriptors counted per process


@dataclass(frozen=True)
class Counts:
    processes: int
    file_descriptors: int


def _read(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(MAX_FILE).decode("ascii", "replace")


def cgroup_dir(pid: int, root: Path = CGROUP_ROOT) -> Path | None:
    """The directory of the cgroup holding ``pid`` whose ``cgroup.procs`` lists the container's
    processes; None when the process is gone or the path would leave the cgroup filesystem."""
    try:
        text = _read(Path(f"/proc/{pid}/cgroup"))
    except OSError:
        return None
    unified = (root / "cgroup.controllers").exists()
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if unified and hier == "0" and controllers == "":
            base = root
        elif not unified and "pids" in controllers.split(","):
            base = root / "pids"
        else:
            continue
        base = base.resolve()        # a controller directory may be a link (cpu -> cpu,cpuacct)
        path = (base / rel.lstrip("/")).resolve()
        return path if path.is_relative_to(base) else None
    return None


def _fds(pid: str) -> int:
    n = 0
    try:
        with os.scandir(f"/proc/{pid}/fd") as it:
            for _ in it:
                n += 1
                if n >= MAX_FDS:
                    break
    except OSError:     # gone meanwhile, or a kernel thread
        return 0
    return n


def counts(pid: int) -> Counts | None:
    """Processes and open descriptors of the cgroup that task ``pid`` runs in."""
    d = cgroup_dir(pid)
    if d is None:
        return None
    try:
        procs = _read(d / "cgroup.procs").split()[:MAX_PROCS]
    except OSError:
        return None
    return Counts(processes=len(procs), file_descriptors=sum(_fds(p) for p in procs if p.isdigit()))


@dataclass(frozen=True)
class FsSize:
    limit_bytes: int
    inodes_total: int
    inodes_free: int


def fs_size(path: str) -> FsSize | None:
    """The size of the filesystem holding ``path`` (statvfs)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return FsSize(limit_bytes=st.f_blocks * st.f_frsize, inodes_total=st.f_files, inodes_free=st.f_ffree)


def read_all(pids: dict[str, int], fs_path: str) -> tuple[dict[str, Counts], FsSize | None]:
    """Counts per container ID (tasks whose cgroup cannot be read are left out) and the size of the
    snapshotter's filesystem: the whole blocking part of one metrics call, for ``asyncio.to_thread``."""
    out = {}
    for cid, pid in pids.items():
        c = counts(pid) if pid > 0 else None
        if c is not None:
            out[cid] = c
    return out, fs_size(fs_path) if fs_path else None
