"""Pinned network namespaces, the way ``ip netns add`` and containerd's pkg/netns make them.

A pod's network namespace must outlive every process in it (the pause process may die and be
replaced) and must survive a restart of criproxy, so it is pinned by bind-mounting the namespace
onto a file: ``<netns_dir>/cni-<uuid>``. Python 3.11 has no ``os.unshare``, so a short-lived
dedicated thread calls unshare(CLONE_NEWNET) through libc and bind-mounts its own
``/proc/self/task/<tid>/ns/net``; the thread then ends, so no pooled thread is ever left inside a
pod's namespace. The directory is made a shared mount (as iproute2 does) so that removing the pin
also removes copies other mount namespaces took.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
EINVAL = 22

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_shared_dirs: set[Path] = set()


class NetnsError(Exception):
    """A namespace could not be created or removed (the message names the path and errno)."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"{what}: {os.strerror(err)}")


def setns_net(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd`` (setns(2); Python 3.11 has
    no ``os.setns``). Only ever called on a dedicated thread that goes back or ends: namespaces are
    per thread, and a pooled thread left in a pod's namespace would carry it into unrelated work."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises NetnsError naming the target."""
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    _check(rc, f"mount {source} on {target}")


def umount(target: str) -> None:
    """Lazy unmount (MNT_DETACH); a path that is not mounted is fine."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (EINVAL, 2):  # not a mount point / gone
            raise NetnsError(f"umount {target}: {os.strerror(err)}")


def ensure_shared_dir(netns_dir: Path) -> None:
    """Create the directory and make it a shared mount of itself (once per process)."""
    if netns_dir in _shared_dirs:
        return
    netns_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    target = str(netns_dir)
    if _libc.mount(b"none", target.encode(), None, MS_SHARED | MS_REC, None) != 0:
        mount(target, target, None, MS_BIND | MS_REC)
        mount("none", target, None, MS_SHARED | MS_REC)
    _shared_dirs.add(netns_dir)


def new_path(netns_dir: Path) -> str:
    """A fresh pin path (``cni-<uuid>``), known before the namespace exists so callers can put it in
    a spec while the namespace is still being made."""
    return str(netns_dir / f"cni-{uuid.UUID(bytes=os.urandom(16))}")


def _create_here(path: str) -> str:
    """Runs on a dedicated, throw-away thread: unshare moves *this thread* into the new namespace."""
    ensure_shared_dir(Path(path).parent)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, MS_BIND)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise NetnsError(f"creating network namespace {path}: {e}") from None
    return path


def _on_thread(path: str, done: Callable[[str | None, BaseException | None], None]) -> None:
    def body() -> None:
        try:
            res = _create_here(path)
        except BaseException as e:
            done(None, e)
        else:
            done(res, None)
    threading.Thread(target=body, name="netns-create", daemon=True).start()


async def create(netns_dir: Path, path: str = "") -> str:
    """Create and pin a network namespace (at ``path`` if given) without blocking the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()

    def settle(res: str | None, err: BaseException | None) -> None:
        if fut.done():
            return
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(res or "")

    def done(res: str | None, err: BaseException | None) -> None:
        loop.call_soon_threadsafe(settle, res, err)
    _on_thread(path or new_path(netns_dir), done)
    return await fut


def remove(path: str) -> None:
    """Unpin and delete; idempotent (a missing path is already removed)."""
    if not path:
        return
    umount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_pinned(path: str) -> bool:
    """True while ``path`` still holds a namespace (a mount point with nsfs behind it)."""
    return bool(path) and os.path.exists(path) and os.path.ismount(path)
