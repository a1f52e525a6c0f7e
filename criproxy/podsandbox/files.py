"""A pod's own files: hostname, hosts and resolv.conf under criproxy's root, /dev/shm under its state.

Every container of the pod bind-mounts these (``SandboxRecord.hostname_path`` etc.), so they are
written once at RunPodSandbox and removed with the sandbox. /dev/shm is a tmpfs of a fixed size
mounted on the host, so containers of one pod share it; it is unmounted at StopPodSandbox (the pod's
processes are gone then) and again, idempotently, at removal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from criproxy.app import App
from criproxy.network import netns
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord, namespace_options
from criproxy.translate import sandbox as t
from criproxy.translate.sandbox_spec import SandboxFiles

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


def sandbox_dirs(app: App, sandbox_id: str) -> tuple[Path, Path]:
    """(persistent dir, volatile dir) of one sandbox."""
    return app.config.root / "sandboxes" / sandbox_id, app.config.state / "sandboxes" / sandbox_id


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)


def _host_text(path: Path, fallback: str) -> str:
    try:
        return path.read_text()
    except OSError:
        return fallback


def write_files(rec: SandboxRecord) -> None:
    """hostname, hosts and resolv.conf: the pod's own (DNSConfig), or the host's where the pod asks."""
    assert rec.dir is not None
    cfg = rec.config
    host_net = namespace_options(cfg).network == cri.NODE
    hostname = cfg.hostname if cfg.hostname and not host_net else os.uname().nodename
    _write(rec.dir / "hostname", hostname + "\n")
    _write(rec.dir / "hosts", _host_text(HOST_HOSTS, t.HOSTS) if host_net else t.HOSTS)
    resolv = t.resolv_conf(cfg.dns_config) if t.has_dns(cfg) else _host_text(HOST_RESOLV_CONF, "")
    _write(rec.dir / "resolv.conf", resolv)


def mount_shm(rec: SandboxRecord, size: int) -> None:
    """A sized tmpfs for the pod's /dev/shm (not for host IPC pods, which use the host's)."""
    if namespace_options(rec.config).ipc == cri.NODE or rec.state_dir is None:
        return
    shm = rec.state_dir / "shm"
    shm.mkdir(mode=0o700, exist_ok=True)
    netns.mount("shm", str(shm), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={size}")


def unmount_shm(rec: SandboxRecord) -> None:
    if rec.state_dir is not None:
        netns.umount(str(rec.state_dir / "shm"))


def files_of(rec: SandboxRecord) -> SandboxFiles:
    assert rec.hostname_path and rec.hosts_path and rec.resolv_conf_path and rec.shm_path
    return SandboxFiles(hostname=str(rec.hostname_path), hosts=str(rec.hosts_path),
                        resolv_conf=str(rec.resolv_conf_path), shm=str(rec.shm_path))


def create(app: App, rec: SandboxRecord) -> None:
    """Make the directories and files; ``remove`` undoes it (also after a partial create)."""
    rec.dir, rec.state_dir = sandbox_dirs(app, rec.id)
    rec.dir.mkdir(parents=True, mode=0o755)
    rec.state_dir.mkdir(parents=True, mode=0o755)
    write_files(rec)
    mount_shm(rec, app.config.sandbox_shm_size)


def remove(app: App, sandbox_id: str) -> None:
    """Unmount and delete everything of this sandbox on disk; idempotent."""
    persistent, volatile = sandbox_dirs(app, sandbox_id)
    netns.umount(str(volatile / "shm"))
    for d in (persistent, volatile):
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(d)
