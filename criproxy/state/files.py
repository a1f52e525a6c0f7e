"""Durable small files: the status and facts criproxy reads back after a crash or a power loss.

A rename alone is atomic but not durable: after a power loss the new name can point at an empty
file (the data was still in the page cache). So the data is fsynced before the rename and the
directory after it, as containerd does for its own metadata. The files are small (under a KiB), so
this is two short syscalls, not an unbounded write on the event loop.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: either the old or the new content survives any crash."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
