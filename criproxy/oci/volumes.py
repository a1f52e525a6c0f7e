"""The image's ``VOLUME``s: a directory per container and volume, seeded from the image, bind-mounted.

containerd's CRI gives every ``VOLUME`` of the image config that no CRI mount covers its own
directory under the container's root dir (``<root>/containers/<id>/volumes/<random>``), copies what
the image holds at that path into it, and bind-mounts it there; the directory goes with the
container (RemoveContainer). A workload writing to a declared volume so writes outside its
copy-on-write layer, as it would under containerd's CRI or Docker.

The copy reads the image, which is untrusted: the snapshot's layers are mounted read-only and
privately for the copy (an overlay of the layer dirs, never the container's writable upper dir), the
volume path is resolved inside that root (a symlink cannot lead out of it, ``..`` stops at its top),
and the copy never follows a link: symlinks are copied as links, FIFOs as FIFOs; device nodes and
sockets are left out (a volume is data; a device node on the host's disk is a risk). Ownership,
modes and times are kept. Everything here is blocking I/O: callers run it in a thread.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import posixpath
import shutil
import stat
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.oci.imagefiles import layer_dirs

MAX_LINKS = 40          # symlinks followed in one lookup, the kernel's own limit
MAX_VOLUMES = 256       # an image declaring more is refused rather than given that many dirs and mounts
MNT_DETACH = 2
MOUNT_TIMEOUT = 30.0
IMAGE_MOUNT = ".image"  # the read-only view of the image, under the container's dir while copying


def image_volumes(image_config: dict[str, Any], container_paths: Iterable[str]) -> list[str]:
    """Absolute, clean destinations of the image's VOLUMEs that no CRI mount already covers (a
    relative one is taken from ``/``, as containerd does), sorted; more than MAX_VOLUMES is refused."""
    declared = (image_config.get("config") or {}).get("Volumes") or {}
    if len(declared) > MAX_VOLUMES:
        raise errors.InvalidArgument(f"the image declares {len(declared)} volumes; at most {MAX_VOLUMES} are "
                                     "supported")
    taken = {posixpath.normpath(p) for p in container_paths if p}
    out = set()
    for volume in declared:
        dst = posixpath.normpath("/" + str(volume).lstrip("/"))
        if dst != "/" and dst not in taken:
            out.add(dst)
    return sorted(out)


def resolve_in_root(root: str, path: str) -> str | None:
    """``path`` looked up inside ``root`` as if ``root`` were ``/`` (None when it does not exist):
    absolute symlink targets restart at ``root`` and ``..`` never climbs above it."""
    parts = collections.deque(p for p in path.split("/") if p)
    done: list[str] = []
    links = 0
    while parts:
        part = parts.popleft()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise errors.InvalidArgument(f"image volume {path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts.extendleft(reversed([p for p in target.split("/") if p]))
            continue
        done.append(part)
    return os.path.join(root, *done)


def _keep_attrs(path: str, st: os.stat_result) -> None:
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree(src: str, dst: str) -> None:
    """Copy the directory ``src`` into the existing empty directory ``dst`` without following links."""
    dirs: list[tuple[str, os.stat_result]] = [(dst, os.lstat(src))]
    stack = [(src, dst)]
    while stack:
        s, d = stack.pop()
        with os.scandir(s) as entries:
            for entry in entries:
                sp, dp = entry.path, os.path.join(d, entry.name)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(dp, 0o700)
                    stack.append((sp, dp))
                    dirs.append((dp, st))      # modes and times after the contents are in
                    continue
                if stat.S_ISLNK(mode):
                    os.symlink(os.readlink(sp), dp)
                elif stat.S_ISREG(mode):
                    shutil.copyfile(sp, dp, follow_symlinks=False)
                elif stat.S_ISFIFO(mode):
                    os.mkfifo(dp, 0o600)
                else:
                    continue                   # devices and sockets stay out of a volume
                _keep_attrs(dp, st)
    for path, st in reversed(dirs):
        _keep_attrs(path, st)


def _umount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


@contextlib.contextmanager
def readonly_image(mounts: Iterable[Any], where: Path) -> Iterator[str]:
    """The image's root filesystem, read-only, for the duration of the block.

    The snapshot's layer dirs (its upper dir is still empty) stacked as an overlay's lower dirs,
    so nothing is ever written to them; one dir needs no mount. ``mount`` runs in the dirs'
    common parent with relative paths, so many layers still fit the kernel's one-page option limit.
    """
    dirs = layer_dirs(mounts)
    if not dirs:
        raise errors.Internal("the container's snapshot has no directories to read the image from")
    if len(dirs) == 1:
        yield dirs[0]
        return
    where.mkdir(parents=True, exist_ok=True)
    parent = os.path.commonpath(dirs)
    lower = ":".join(os.path.relpath(d, parent) for d in dirs)
    res = subprocess.run(["mount", "-t", "overlay", "-o", f"ro,lowerdir={lower}", "overlay", str(where)],
                         cwd=parent, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
    if res.returncode != 0:
        where.rmdir()
        raise errors.Internal(f"mounting the image read-only to copy its volumes failed: {res.stderr.strip()}")
    try:
        yield str(where)
    finally:
        _umount(str(where))
        where.rmdir()


def seed_volumes(container_root: Path, mounts: Iterable[Any], volumes: list[str]) -> list[tuple[str, str]]:
    """(container path, host dir) per volume: a fresh dir under ``container_root/volumes`` holding a
    copy of what the image has at that path (nothing when the image has no directory there)."""
    out: list[tuple[str, str]] = []
    if not volumes:
        return out
    base = container_root / "volumes"
    base.mkdir(parents=True, exist_ok=True)
    with readonly_image(mounts, container_root / IMAGE_MOUNT) as root:
        for dst in volumes:
            host = base / os.urandom(16).hex()
            host.mkdir(mode=0o755)
            src = resolve_in_root(root, dst)
            if src is not None and stat.S_ISDIR(os.lstat(src).st_mode):
                copy_tree(src, str(host))
            out.append((dst, str(host)))
    return out


def remove_container_root(container_root: Path) -> None:
    """The container's dir with its volumes; an image view left mounted by a crash is detached first."""
    view = container_root / IMAGE_MOUNT
    if os.path.ismount(view):
        with contextlib.suppress(OSError):
            _umount(str(view))
    shutil.rmtree(container_root, ignore_errors=True)


def volume_mounts(volumes: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The OCI bind mounts of the seeded volume dirs (private, read-write, as containerd's)."""
    return [{"destination": dst, "type": "bind", "source": host, "options": ["rbind", "rprivate", "rw"]}
            for dst, host in volumes]
