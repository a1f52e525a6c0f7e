"""Reading a host file whose path comes from a request or the configuration, bounded.

A path an operator or a CRI request names (a Localhost seccomp profile, a CDI spec, a base runtime
spec, a CNI conflist) may turn out to be a FIFO, a device or a huge file. One rule for all of them:
open non-blocking (a FIFO's open returns at once instead of waiting for a writer), require a
regular file on the opened descriptor (so a link swapped in between cannot change the answer), and
read at most ``limit`` bytes. Callers phrase the error in their own vocabulary.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class HostFileError(Exception):
    """The file is not a regular file or is too large; the message names the problem, not the path."""


def read_regular(path: str | Path, limit: int) -> bytes:
    """The whole content of the regular file at ``path``, at most ``limit`` bytes.

    Raises HostFileError for another kind of file or a larger one, OSError when it cannot be opened
    or read (callers decide whether, say, a missing file is an error)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return read_fd(fd, limit)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """The content of the open regular file ``fd``, at most ``limit`` bytes (the check is made on the
    descriptor itself, and again on what was read, in case the file grew after the fstat)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise HostFileError("not a regular file")
    if st.st_size > limit:
        raise HostFileError(f"larger than {limit} bytes")
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise HostFileError(f"larger than {limit} bytes")
    return b"".join(chunks)
