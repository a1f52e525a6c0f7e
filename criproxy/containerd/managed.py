"""A private containerd that criproxy starts itself when none is running (``--managed-containerd``).

It is the embedded default of the README's run command: a host with nothing but the containerd
package gets a working runtime. The private daemon keeps everything under criproxy's own dirs,
has the built-in CRI plugin disabled (criproxy is the CRI here), and is stopped by PID on exit.

The config file speaks the binary's own format: containerd 1.x reads ``version = 2``, 2.x reads
``version = 3``, where the CRI is three plugins (``io.containerd.grpc.v1.cri`` plus its images and
runtime halves). From 1.7 on NRI is built in and on, listening on the machine-wide NRI socket. All
of those are disabled, so the private daemon never takes a system path. The child gets the binary's directory
first on PATH: containerd finds its shim on PATH, and the shim of another containerd release (the
system's, say) must not serve this one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
from pathlib import Path

from criproxy.config import Config

log = logging.getLogger("criproxy.managed")


# Plugins a managed containerd must not run: the built-in CRI (criproxy is the CRI), NRI from 1.7 on
# (built in and on, on a machine-wide socket) and, from 2.x on, the CRI's split halves.
CRI = "io.containerd.grpc.v1.cri"
NRI = "io.containerd.nri.v1.nri"
CRI_2X = ["io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]


def disabled_plugins(version: tuple[int, int]) -> list[str]:
    return [CRI] + ([NRI] if version >= (1, 7) else []) + (CRI_2X if version >= (2, 0) else [])
VERSION_TIMEOUT = 10.0  # seconds for ``containerd --version``
_VERSION_RE = re.compile(rb"\sv?(\d+)\.(\d+)\.\d+")


def parse_version(output: bytes) -> tuple[int, int] | None:
    """(major, minor) from ``containerd --version`` output
    (``containerd github.com/containerd/containerd/v2 2.1.9 …``); None when there is none."""
    m = _VERSION_RE.search(output)
    return (int(m.group(1)), int(m.group(2))) if m else None


def config_text(cfg: Config, version: tuple[int, int] = (1, 6)) -> str:
    """The managed daemon's config in the format of that containerd (``version = 2`` for 1.x, 3 for 2.x)."""
    d = cfg.containerd_dir
    disabled = ", ".join(f'"{p}"' for p in disabled_plugins(version))
    return "\n".join([
        f"version = {3 if version >= (2, 0) else 2}",
        f'root = "{cfg.root / "containerd"}"',
        f'state = "{d / "state"}"',
        f"disabled_plugins = [{disabled}]",
        "[grpc]",
        f'  address = "{d / "containerd.sock"}"',
        "[ttrpc]",
        f'  address = "{d / "containerd.sock.ttrpc"}"',
        "",
    ])


class ManagedContainerd:
    """Owns one containerd child process: start, wait until it answers, stop by PID."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> Path:
        return self.cfg.containerd_dir / "containerd.sock"

    async def start(self) -> Path:
        binary = shutil.which(self.cfg.containerd_binary)
        if binary is None:
            raise RuntimeError(f"managed containerd requested but '{self.cfg.containerd_binary}' is not on PATH "
                               "(install the containerd package)")
        version = await binary_version(binary)
        if version is None:
            raise RuntimeError(f"managed containerd: cannot tell the version of {binary} "
                               f"('{binary} --version' said nothing like 1.7.0)")
        d = self.cfg.containerd_dir
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = d / "config.toml"
        conf.write_text(config_text(self.cfg, version))
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(binary).parent),
                                                      os.environ.get("PATH", os.defpath)])}
        logf = open(d / "containerd.log", "ab")  # noqa: ASYNC230 - once at start-up, handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--config", str(conf), stdout=logf, stderr=logf, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True, env=env)
        logf.close()
        log.info("started managed containerd pid %d on %s (containerd %d.%d, %s)", self.proc.pid, self.socket,
                 *version, binary)
        return self.socket

    async def stop(self, grace: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("managed containerd did not stop in %.0fs; killing pid %d", grace, proc.pid)
            proc.kill()
            await proc.wait()
        log.info("managed containerd pid %d stopped", proc.pid)


async def binary_version(binary: str) -> tuple[int, int] | None:
    """Ask the binary its version: one line, read after it exits (a binary that writes more than a
    pipe holds, or hangs, is killed at the timeout and the version is unknown)."""
    proc = await asyncio.create_subprocess_exec(binary, "--version", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        await asyncio.wait_for(proc.wait(), VERSION_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return parse_version(await proc.stdout.read(4096)) if proc.stdout is not None else None


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the unix socket (without speaking to it)."""
    import socket

    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        s.close()
