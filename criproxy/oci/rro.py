"""Recursive read-only mounts (CRI ``Mount.recursive_read_only``): whether this host can make them.

A read-only bind mount is read-only only at its top: a mount below the source (a tmpfs under a host
dir, say) stays writable in the container. The ``rro`` mount option asks runc to make the whole tree
read-only with ``mount_setattr(2)`` and ``AT_RECURSIVE``, which needs both a runc that knows the option
(``runc features`` lists it in ``mountOptions``) and a kernel with the syscall (5.12 and later).
Both are probed once at start, as containerd's CRI does, per runtime handler (each may name its own
runc binary); ``RuntimeHandlerFeatures.recursive_read_only_mounts`` reports the result and
CreateContainer refuses an rro mount where it is false rather than silently mounting it writable
below the top.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import logging
import os
import shutil

log = logging.getLogger(__name__)

SYS_MOUNT_SETATTR = 442          # the same number on every architecture (asm-generic, x86_64, arm64)
RUNC_FEATURES_TIMEOUT = 5.0      # seconds `runc features` may take
RUNC_FEATURES_MAX = 1 << 20      # bytes of its output read


def kernel_supports_rro() -> bool:
    """Whether the kernel has mount_setattr(2): called with a bad fd it fails with EBADF (or
    EINVAL) where it exists and ENOSYS where it does not; it changes nothing either way."""
    libc = ctypes.CDLL(None, use_errno=True)
    res = libc.syscall(SYS_MOUNT_SETATTR, -1, b"", 0, None, 0)
    return not (res == -1 and ctypes.get_errno() == errno.ENOSYS)


def runc_features_support_rro(features: dict[str, object]) -> bool:
    """``runc features`` output lists "rro" among its mount options (runc 1.1 and later)."""
    opts = features.get("mountOptions")
    return isinstance(opts, list) and "rro" in opts


async def runc_supports_rro(binary: str) -> bool:
    """Run ``<binary> features`` (bounded in time and output); False when it is missing, fails or
    predates the subcommand (runc 1.0)."""
    path = shutil.which(binary) if not os.path.isabs(binary) else binary
    if not path:
        return False
    try:
        proc = await asyncio.create_subprocess_exec(path, "features", stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return False
    try:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(RUNC_FEATURES_MAX), RUNC_FEATURES_TIMEOUT)
        rc = await asyncio.wait_for(proc.wait(), RUNC_FEATURES_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False
    if rc != 0:
        return False
    try:
        features = json.loads(out)
    except ValueError:
        return False
    return isinstance(features, dict) and runc_features_support_rro(features)


async def probe(binaries: dict[str, str]) -> dict[str, bool]:
    """Support per handler name, from each handler's runc binary and the kernel (asked once)."""
    kernel = kernel_supports_rro()
    out: dict[str, bool] = {}
    cache: dict[str, bool] = {}
    for name, binary in binaries.items():
        if binary not in cache:
            cache[binary] = kernel and await runc_supports_rro(binary)
        out[name] = cache[binary]
    log.info("recursive read-only mounts: kernel %s; per handler %s", "yes" if kernel else "no", out)
    return out
