"""A private containerd that criproxy starts itself when none is running (``--managed-containerd``).

It is the embedded default of the README's run command: a host with nothing but the containerd
package gets a working runtime. The private daemon keeps everything under criproxy's own dirs,
has the built-in CRI plugin disabled (criproxy is the CRI here), and is stopped by PID on exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path

from criproxy.config import Config

log = logging.getLogger("criproxy.managed")


def config_text(cfg: Config) -> str:
    d = cfg.containerd_dir
    return "\n".join([
        "version = 2",
        f'root = "{cfg.root / "containerd"}"',
        f'state = "{d / "state"}"',
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
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
        d = self.cfg.containerd_dir
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = d / "config.toml"
        conf.write_text(config_text(self.cfg))
        logf = open(d / "containerd.log", "ab")  # noqa: ASYNC230 - once at start-up, handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--config", str(conf), stdout=logf, stderr=logf, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        logf.close()
        log.info("started managed containerd pid %d on %s", self.proc.pid, self.socket)
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
