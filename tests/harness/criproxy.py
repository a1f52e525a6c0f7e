"""The shim under test as a real subprocess (``python -m criproxy serve``) against the private containerd."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from .client import CriClient
from .cni import CNI_BIN_DIR
from .images import REPO_ROOT
from .proc import Daemon, HarnessError, wait_until

# The harness's containerd runs runc with SystemdCgroup = false, so criproxy must use cgroupfs too:
# left on "auto" it would pick systemd on a systemd host and no longer match what it is compared with.
CGROUP_DRIVER = "cgroupfs"


class CriproxyProcess:
    """One criproxy instance with its own socket, root, state and log under ``base``."""

    def __init__(self, base: Path, containerd_address: Path, cni_conf_dir: Path, hosts_dir: Path,
                 pause_image: str, namespace: str = "criproxy", extra_args: Sequence[str] = ()) -> None:
        self.base = base
        self.socket = base / "criproxy.sock"
        self.root = base / "root"
        self.state = base / "state"
        self.log = base / "criproxy.log"
        # Pod netns are pinned under the instance dir (not /var/run/netns) so teardown finds them.
        self.netns_dir = base / "netns"
        self.namespace = namespace
        # --cni-bin-dir appends, so an instance naming its own plugin dirs gets only those, in its order
        # (a test's wrapper of a real plugin must be found before it).
        bins = [] if "--cni-bin-dir" in extra_args else ["--cni-bin-dir", str(CNI_BIN_DIR)]
        self.argv = [sys.executable, "-m", "criproxy", "serve", "--listen", str(self.socket),
                     "--containerd-address", str(containerd_address), "--namespace", namespace,
                     "--root", str(self.root), "--state", str(self.state), "--managed-containerd", "never",
                     "--cni-conf-dir", str(cni_conf_dir), *bins,
                     "--registry-config-path", str(hosts_dir), "--pause-image", pause_image,
                     "--log-level", "debug", "--cgroup-driver", CGROUP_DRIVER, *extra_args]
        env = {**os.environ, "CRIPROXY_NETNS_DIR": str(self.netns_dir)}
        self.daemon = Daemon("criproxy", self.argv, self.log, cwd=REPO_ROOT, env=env)
        self.start_seconds = 0.0  # how long the last start took until Version answered
        self.failed_starts = 0    # consecutive; ensure_running gives up fast after a few

    @property
    def pid(self) -> int | None:
        return self.daemon.pid

    def alive(self) -> bool:
        return self.daemon.alive()

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the socket exists and Version succeeds (the readiness gate is open)."""
        for d in (self.root, self.state):
            d.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.failed_starts += 1
        self.daemon.start()
        try:
            wait_until(lambda: self._ready() or not self.alive(), timeout, "criproxy readiness", 0.1)
        except HarnessError as e:
            self.daemon.stop(grace=5)
            raise HarnessError(f"{e}\n--- criproxy log tail:\n{self.log_tail()}") from e
        if not self.alive():
            raise HarnessError(f"criproxy exited {self.daemon.exited_with()} during start-up\n"
                               f"--- criproxy log tail:\n{self.log_tail()}")
        self.start_seconds = time.monotonic() - started
        self.failed_starts = 0

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        with CriClient(self.socket) as c:
            try:
                c.version(timeout=2)
            except grpc.RpcError:
                return False
        return True

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM by PID (graceful shutdown), SIGKILL after ``grace``; returns the exit code."""
        return self.daemon.stop(grace=grace)

    def kill(self) -> int | None:
        """SIGKILL, for crash/recovery tests."""
        return self.daemon.kill()

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def ensure_running(self, max_failed_starts: int = 2) -> None:
        """Start again if a previous test stopped or killed it (fail fast once starting keeps failing)."""
        if self.alive():
            return
        if self.failed_starts >= max_failed_starts:
            raise HarnessError(f"criproxy failed to start {self.failed_starts} times in a row; not retrying\n"
                               f"--- criproxy log tail:\n{self.log_tail()}")
        self.start()

    def log_tail(self, lines: int = 80) -> str:
        return self.daemon.log_tail(lines)

    def client(self) -> CriClient:
        return CriClient(self.socket)
