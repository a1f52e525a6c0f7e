"""Files read out of an image's root filesystem (host facts): its /etc/passwd and /etc/group.

The image is untrusted, so its files are read the way the container would see them and never the
way the host would: the snapshot is not mounted; its layers (an overlay's upper dir, then its lower
dirs top-down; a bind snapshot is one directory) are walked as one merged view, one path component
at a time, relative to directory descriptors and without letting the kernel follow any link.

- A symlink is resolved by this walk *inside the image*: an absolute target starts again at the
  image's root, ``..`` never climbs above it (``RESOLVE_IN_ROOT`` semantics, as containerd's
  rooted lookup does, which keeps NixOS-style ``/etc/passwd -> /nix/store/…`` links working).
  So ``/etc/passwd -> /etc/shadow`` reads the image's shadow, never the host's.
- Overlay rules: the topmost layer holding a name wins; a whiteout (character device 0:0) or a
  non-directory hides lower layers; an opaque directory hides the directories below it.
- The file itself is opened ``O_NONBLOCK|O_NOFOLLOW`` and must be a regular file (``fstat``): a
  FIFO cannot block the reader and a device cannot stream forever. At most ``MAX_USER_FILE`` bytes
  (10 MiB, the cap containerd's user lookup applies) are read.

Missing files (or a symlink to a path the image does not have) read as "absent", as in containerd;
a non-regular file, a file over the cap or a symlink loop is an error that names the file. The
walk does blocking I/O on snapshot directories: callers run ``read_user_files`` in a thread.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
from collections.abc import Iterable
from typing import Any

from criproxy import errors
from criproxy.hostfile import HostFileError, read_fd
from criproxy.oci.container import UserFiles

MAX_USER_FILE = 10 << 20
MAX_LINKS = 40                      # the kernel's own limit on symlinks followed in one lookup
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def layer_dirs(mounts: Iterable[Any]) -> list[str]:
    """The directories of a prepared snapshot's mounts, topmost first."""
    dirs: list[str] = []
    for m in mounts:
        if m.type == "bind":
            dirs.append(m.source)
        elif m.type == "overlay":
            opts = dict(o.split("=", 1) for o in m.options if "=" in o)
            if "upperdir" in opts:
                dirs.append(opts["upperdir"])
            dirs += [d for d in opts.get("lowerdir", "").split(":") if d]
    return dirs


def read_user_files(mounts: Iterable[Any], limit: int = MAX_USER_FILE) -> UserFiles:
    """/etc/passwd and /etc/group of a prepared snapshot ("" for a file the image does not have)."""
    dirs = layer_dirs(mounts)
    passwd, group = read_file(dirs, "etc/passwd", limit), read_file(dirs, "etc/group", limit)
    return UserFiles(passwd=_text(passwd), group=_text(group))


def _text(data: bytes | None) -> str:
    return data.decode(errors="replace") if data is not None else ""


def read_file(layers: list[str], path: str, limit: int = MAX_USER_FILE) -> bytes | None:
    """The bytes of ``path`` in the merged view of ``layers`` (topmost first), None when absent."""
    with _Walk(layers) as walk:
        return walk.read(path, limit)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


class _Walk:
    """One lookup: the directory descriptors it opened are closed when it ends."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self.fds: list[int] = []

    def __enter__(self) -> _Walk:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds:
            os.close(fd)

    def _open_dir(self, name: str, dir_fd: int | None = None) -> int:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        self.fds.append(fd)
        return fd

    def _roots(self) -> list[int]:
        try:
            return [self._open_dir(d) for d in self.layers]
        except OSError as e:
            raise errors.FailedPrecondition(f"snapshot layer {e.filename}: {e.strerror}") from None

    @staticmethod
    def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _lookup(self, merged: list[int], name: str) -> tuple[int, int, os.stat_result] | None:
        """(layer position, its dir fd, lstat) of the topmost entry ``name`` in a merged directory."""
        for i, fd in enumerate(merged):
            st = self._lstat(name, fd)
            if st is None:
                continue
            return None if _is_whiteout(st) else (i, fd, st)
        return None

    def _descend(self, merged: list[int], start: int, name: str) -> list[int]:
        """The merged directory ``name``: its directory in each layer from ``start`` down, until a
        layer hides the rest (a whiteout or non-directory there, or an opaque directory)."""
        out: list[int] = []
        for fd in merged[start:]:
            st = self._lstat(name, fd)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            child = self._open_dir(name, fd)
            out.append(child)
            if _opaque(child):
                break
        return out

    def read(self, path: str, limit: int) -> bytes | None:
        shown = "/" + path.strip("/")
        root = self._roots()
        stack: list[list[int]] = [root]                 # merged directories from the root down
        todo = collections.deque(c for c in path.split("/") if c not in ("", "."))
        links = 0
        while todo:
            name = todo.popleft()
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            hit = self._lookup(stack[-1], name)
            if hit is None:
                return None
            pos, dir_fd, st = hit
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise errors.FailedPrecondition(f"the image's {shown}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=dir_fd)
                if target.startswith("/"):
                    del stack[1:]
                todo.extendleft(reversed([c for c in target.split("/") if c not in ("", ".")]))
                continue
            if stat.S_ISDIR(st.st_mode) and todo:
                stack.append(self._descend(stack[-1], pos, name))
                continue
            if todo:                                    # a file in the middle of the path: ENOTDIR
                return None
            return _read_regular(shown, name, dir_fd, st, limit)
        raise errors.FailedPrecondition(f"the image's {shown} is a directory, not a file")


def _opaque(fd: int) -> bool:
    for attr in OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError:
            continue
    return False


def _read_regular(shown: str, name: str, dir_fd: int, st: os.stat_result, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes; anything else is refused before it is opened
    (a device's open can have effects) and again after (the entry may have been swapped)."""
    if not stat.S_ISREG(st.st_mode):
        raise errors.FailedPrecondition(f"the image's {shown} is {_kind(st.st_mode)}, not a regular file")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise errors.FailedPrecondition(f"the image's {shown} changed while it was read") from None
        raise errors.FailedPrecondition(f"cannot open the image's {shown}: {e.strerror}") from None
    try:
        return read_fd(fd, limit)
    except HostFileError:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.FailedPrecondition(f"the image's {shown} is {_kind(st.st_mode)}, not a regular file") \
                from None
        raise _too_big(shown, limit) from None
    finally:
        os.close(fd)


def _too_big(shown: str, limit: int) -> errors.CriError:
    return errors.ResourceExhausted(f"the image's {shown} is larger than {limit >> 20} MiB; "
                                    "refusing to read it")
