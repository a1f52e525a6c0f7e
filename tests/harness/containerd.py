"""A private containerd (own root, state, sockets) with the built-in CRI plugin enabled.

The built-in CRI is kept on so tests can compare criproxy against it on the same containerd
(criproxy uses namespace ``criproxy``, the built-in CRI ``k8s.io``). It gets its own CNI conf dir,
the session's pause image as ``sandbox_image``, ``restrict_oom_score_adj`` (root here lacks
CAP_SYS_RESOURCE), containerd 2.x's unprivileged ports/ICMP pod sysctls (off by default in 1.x; on
in criproxy) and pod netns pinned under its state dir so cleanup finds them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from .cni import CNI_BIN_DIR
from .proc import Daemon, HarnessError, kill_trees, pids_with_cmdline, run, unmount_under, wait_until

DEFAULT_RUNC_ROOT = "/run/containerd/runc"


class Containerd:
    """containerd under ``base`` (keep ``base`` short: socket paths must stay under ~100 chars)."""

    def __init__(self, base: Path, sandbox_image: str, cni_conf_dir: Path, hosts_dir: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.address = base / "containerd.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.sandbox_image = sandbox_image
        self.cni_conf_dir = cni_conf_dir
        self.hosts_dir = hosts_dir
        self.daemon = Daemon("containerd", ["containerd", "--config", str(self.config)], self.log)

    def config_toml(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.root}"
state = "{self.state}"

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{self.sandbox_image}"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self.cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{self.hosts_dir}"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
"""

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until ``ctr version`` answers on the private socket."""
        for d in (self.root, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_toml())
        self.daemon.start()
        try:
            wait_until(lambda: self._answers() or not self.daemon.alive(), timeout, "containerd")
        except HarnessError as e:
            raise HarnessError(f"{e}\n{self.daemon.log_tail()}") from e
        if not self.daemon.alive():
            raise HarnessError(f"containerd exited {self.daemon.exited_with()}:\n{self.daemon.log_tail()}")

    def _answers(self) -> bool:
        if not self.address.exists():
            return False
        res = subprocess.run(["ctr", "-a", str(self.address), "version"], capture_output=True, timeout=10)
        return res.returncode == 0

    def alive(self) -> bool:
        return self.daemon.alive()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM by PID, SIGKILL after ``grace``; shims and containers keep running (as in prod)."""
        self.daemon.stop(grace=grace, sig=signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL containerd itself (crash tests); shims survive, as they would in production."""
        self.daemon.kill()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop then start on the same dirs: running containers survive, clients must reconnect."""
        self.stop()
        self.start(timeout)

    def ctr(self, *args: str, namespace: str | None = "criproxy", timeout: float = 120,
            check: bool = True) -> str:
        """Run ``ctr -a SOCK [-n NS] ARGS…`` and return its stdout."""
        ns = ["-n", namespace] if namespace else []
        return run(["ctr", "-a", str(self.address), *ns, *args], timeout=timeout, check=check)

    def shim_pids(self) -> list[int]:
        """Shims started by this containerd (their ``-address`` argument is our socket)."""
        addr = str(self.address)

        def ours(argv: list[str]) -> bool:
            return any(a == "-address" and i + 1 < len(argv) and argv[i + 1] == addr
                       for i, a in enumerate(argv)) or f"-address={addr}" in argv
        return pids_with_cmdline(ours)

    def task_bundles(self) -> list[Path]:
        """Bundle dirs of every task this containerd ever started and did not delete."""
        return sorted(self.state.glob("io.containerd.runtime.v2.task/*/*"))

    def force_delete_tasks(self) -> None:
        """``runc delete --force`` each leftover task: kills it and frees its cgroups and runc state.

        runc keeps state in a machine-wide root (``/run/containerd/runc/<ns>`` unless the task's
        options say otherwise), so killing processes alone would leave entries there for ever.
        """
        for bundle in self.task_bundles():
            root = f"{DEFAULT_RUNC_ROOT}/{bundle.parent.name}"
            with contextlib.suppress(OSError, ValueError):
                opts = json.loads((bundle / "options.json").read_text())
                root = opts.get("root") or opts.get("Root") or root
            run(["runc", "--root", root, "delete", "--force", bundle.name], check=False, timeout=30)

    def cleanup(self) -> None:
        """Stop containerd, kill its shims and their containers, unmount and delete its dirs."""
        errors: list[str] = []
        steps: list[Callable[[], None]] = [self.stop, self.force_delete_tasks,
                                           lambda: kill_trees(self.shim_pids()),
                                           lambda: unmount_under([self.base])]
        for step in steps:
            try:
                step()
            except Exception as e:  # keep going: every later step still frees something
                errors.append(repr(e))
        shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            raise HarnessError("containerd cleanup: " + "; ".join(errors))
