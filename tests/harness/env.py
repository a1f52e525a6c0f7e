"""The whole session environment: slot, images, registry, private containerd, CNI dirs, criproxy.

``Environment.create()`` brings everything up under a short per-session base dir
(``/run/cpt-XXXXXXXX``); ``close()`` tears it all down by PID and path, even after failures, and
copies the logs to ``<repo>/.testenv/logs/``. Base dirs left by a session that died (its lock is
free) are reaped at the next start-up.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .client import CriClient
from .cni import LOCK_DIR, Network, Slot, acquire_slot, cleanup_slot_network, write_conf_dir
from .containerd import DEFAULT_RUNC_ROOT, Containerd
from .criproxy import CriproxyProcess
from .images import DEFAULT_CACHE, REPO_ROOT, ImageLayout, build_standard_images
from .proc import FileLock, HarnessError, kill_trees, pids_with_cmdline, run, unmount_under
from .registry import Registry

BASE_PARENT = Path("/run")
BASE_PREFIX = "cpt-"
LOG_KEEP = REPO_ROOT / ".testenv" / "logs"
STALE_UNLOCKED_AGE = 600.0  # a base dir with no lock file at all is only reaped when this old


def _base_lock(base: Path) -> FileLock:
    return FileLock(LOCK_DIR / f"{base.name}.lock")


def _kill_users_of(base: Path) -> None:
    """Kill processes (and their descendants) whose argv names a path under ``base``."""
    prefix = str(base) + "/"
    kill_trees(pids_with_cmdline(lambda argv: any(prefix in a or a == str(base) for a in argv)))


def reap_orphan_runc_state(runc_root: Path = Path(DEFAULT_RUNC_ROOT)) -> None:
    """``runc delete --force`` entries in the machine-wide runc root whose bundle was in a base dir
    that no longer exists (a session that died or was torn down before its tasks were deleted)."""
    for ns_root in runc_root.glob("*"):
        out = run(["runc", "--root", str(ns_root), "list", "--format", "json"], check=False)
        for c in json.loads(out or "null") or []:
            bundle = Path(c.get("bundle", ""))
            parts = bundle.parts
            if (len(parts) > 2 and Path(*parts[:2]) == BASE_PARENT and parts[2].startswith(BASE_PREFIX)
                    and not Path(*parts[:3]).exists()):
                run(["runc", "--root", str(ns_root), "delete", "--force", c["id"]], check=False)


def reap_stale_bases() -> list[Path]:
    """Clean up base dirs of sessions that died without tearing down (their lock is free)."""
    reaped = []
    for base in BASE_PARENT.glob(f"{BASE_PREFIX}*"):
        lock = _base_lock(base)
        if not lock.path.exists() and time.time() - base.stat().st_mtime < STALE_UNLOCKED_AGE:
            continue  # being created right now, or not ours to judge yet
        if not lock.try_acquire():
            continue
        try:
            _kill_users_of(base)
            unmount_under([base])
            shutil.rmtree(base, ignore_errors=True)
            reaped.append(base)
        finally:
            lock.release(unlink=True)
    reap_orphan_runc_state()
    return reaped


class Environment:
    """Everything a test needs to talk to the real stack; see the attribute list in ``__init__``."""

    __test__ = False

    def __init__(self, cache_dir: Path = DEFAULT_CACHE) -> None:
        self.started = time.monotonic()
        self.cache_dir = cache_dir
        self.name = BASE_PREFIX + secrets.token_hex(4)
        self.base = BASE_PARENT / self.name              # short: unix socket paths live here
        self._lock = _base_lock(self.base)
        self.slot: Slot | None = None
        self.images: dict[str, ImageLayout] = {}
        self.registry = Registry(self.base / "reg")
        self.hosts_dir = self.base / "hosts"              # containerd-style config_path dir
        self.criproxy_cni_dir = self.base / "net" / "cpx"
        self.containerd_cni_dir = self.base / "net" / "cpk"
        self.ipam_dir = self.base / "net" / "ipam"
        self.containerd: Containerd | None = None
        self.criproxies: list[CriproxyProcess] = []
        self.netns: list[str] = []                        # `ip netns` names tests made via add_netns
        self._closed = False

    # -- bring-up -------------------------------------------------------------------------------

    @classmethod
    def create(cls, cache_dir: Path = DEFAULT_CACHE) -> Environment:
        """Bring the environment up; on any failure tear down what exists and raise HarnessError."""
        env = cls(cache_dir)
        atexit.register(env.close)
        try:
            env._bring_up()
        except BaseException:
            env.close()
            raise
        return env

    def _bring_up(self) -> None:
        reap_stale_bases()
        if not self._lock.try_acquire():
            raise HarnessError(f"cannot lock {self._lock.path}")
        self.base.mkdir(mode=0o755)
        self.slot = acquire_slot()
        self.images = build_standard_images(self.cache_dir)
        self.registry.start()
        for layout in self.images.values():
            self.registry.push(layout)
        self.registry.write_hosts(self.hosts_dir)
        write_conf_dir(self.criproxy_cni_dir, self.criproxy_net, self.ipam_dir / self.criproxy_net.name)
        write_conf_dir(self.containerd_cni_dir, self.containerd_net, self.ipam_dir / self.containerd_net.name)
        self.containerd = Containerd(self.base / "ctrd", self.pause_image, self.containerd_cni_dir,
                                     self.hosts_dir)
        self.containerd.start()
        self.bring_up_seconds = time.monotonic() - self.started

    # -- what tests use -------------------------------------------------------------------------

    @property
    def criproxy_net(self) -> Network:
        """criproxy's pod network (bridge ``cpx{N}``)."""
        return self._slot.criproxy_net

    @property
    def containerd_net(self) -> Network:
        """The built-in CRI's pod network (bridge ``cpk{N}``)."""
        return self._slot.containerd_net

    @property
    def _slot(self) -> Slot:
        if self.slot is None:
            raise HarnessError("environment not up")
        return self.slot

    @property
    def ctrd(self) -> Containerd:
        if self.containerd is None:
            raise HarnessError("environment not up")
        return self.containerd

    @property
    def containerd_address(self) -> Path:
        return self.ctrd.address

    @property
    def runc_version(self) -> str:
        """The system runc's version (every containerd of the matrix runs it)."""
        out = run(["runc", "--version"], check=False)
        return out.split()[2] if out.startswith("runc version ") else "?"

    @property
    def registry_host(self) -> str:
        """``127.0.0.1:PORT`` of the session registry."""
        return self.registry.host

    @property
    def pause_image(self) -> str:
        return self.registry.ref("pause", "3.9")

    @property
    def busybox_image(self) -> str:
        return self.registry.ref("busybox", "latest")

    def image_ref(self, name: str, tag: str = "latest") -> str:
        return self.registry.ref(name, tag)

    def push(self, layout: ImageLayout, name: str | None = None, tag: str | None = None) -> str:
        """Push another built image to the session registry; returns its reference."""
        return self.registry.push(layout, name, tag)

    def ctr(self, *args: str, namespace: str | None = "criproxy", timeout: float = 120,
            check: bool = True) -> str:
        """``ctr -a <private socket> -n <namespace> ARGS…``; returns stdout."""
        return self.ctrd.ctr(*args, namespace=namespace, timeout=timeout, check=check)

    def ensure_running(self) -> None:
        """Start containerd again if an earlier test stopped or killed it and did not bring it back."""
        if not self.ctrd.alive():
            self.ctrd.start()

    def scratch_dir(self, prefix: str = "t") -> Path:
        """A fresh directory under the session base (pod log dirs, files to mount…), removed at the end."""
        parent = self.base / "scratch"
        parent.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))

    def add_netns(self, prefix: str = "cpt") -> str:
        """``ip netns add`` a namespace of this session (deleted at teardown); returns its name."""
        name = f"{prefix}-{self.name[len(BASE_PREFIX):]}-{len(self.netns)}"
        run(["ip", "netns", "add", name])
        self.netns.append(name)
        return name

    def builtin_cri(self) -> CriClient:
        """A CRI client for containerd's own built-in CRI plugin (for side-by-side comparison)."""
        return CriClient(self.containerd_address)

    def new_criproxy(self, name: str = "cp", extra_args: Sequence[str] = (), namespace: str = "criproxy",
                     start: bool = True) -> CriproxyProcess:
        """A criproxy instance under ``base/<name>``, stopped at session end at the latest."""
        proc = CriproxyProcess(self.base / name, self.containerd_address, self.criproxy_cni_dir,
                               self.hosts_dir, self.pause_image, namespace=namespace, extra_args=extra_args)
        self.criproxies.append(proc)
        if start:
            proc.start()
        return proc

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Tear everything down by PID and path; keeps going past errors and reports them at the end."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for step in self._teardown_steps():
            try:
                step()
            except Exception as e:  # every later step still frees something
                errors.append(repr(e))
        if errors:
            raise HarnessError("test environment teardown: " + "; ".join(errors))

    def _teardown_steps(self) -> list[Callable[[], object]]:
        ctrd = self.containerd
        steps: list[Callable[[], object]] = [p.stop for p in self.criproxies]
        if ctrd is not None:
            steps.append(ctrd.stop)
        steps += [self.registry.stop, self._save_logs]
        if ctrd is not None:
            steps.append(ctrd.cleanup)
        steps += [lambda: _kill_users_of(self.base), self._delete_netns, lambda: unmount_under([self.base])]
        if self.slot is not None:
            steps += [lambda: cleanup_slot_network(self._slot), self._slot.release]
        steps += [lambda: shutil.rmtree(self.base, ignore_errors=True),
                  lambda: self._lock.release(unlink=True)]
        return steps

    def _delete_netns(self) -> None:
        for name in self.netns:
            run(["ip", "netns", "delete", name], check=False)

    def log_files(self) -> list[Path]:
        """The session's daemon logs (registry, containerd, each criproxy)."""
        logs = [self.base / "reg" / "registry.log"]
        if self.containerd is not None:
            logs.append(self.containerd.log)
        return logs + [p.log for p in self.criproxies]

    def _save_logs(self) -> None:
        """Keep the session's logs after its dirs are gone (latest few sessions only)."""
        dest = LOG_KEEP / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.name}"
        for log in self.log_files():
            if log.exists():
                target = dest / log.relative_to(self.base)
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.copy2(log, target)
        if LOG_KEEP.exists():
            for old in sorted(LOG_KEEP.iterdir())[:-5]:
                shutil.rmtree(old, ignore_errors=True)
