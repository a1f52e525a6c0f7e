"""A private containerd (own root, state, sockets) with the built-in CRI plugin enabled.

The built-in CRI is kept on so tests can compare criproxy against it on the same containerd
(criproxy uses namespace ``criproxy``, the built-in CRI ``k8s.io``). It gets its own CNI conf dir,
the session's pause image as its sandbox image, ``restrict_oom_score_adj`` (root here lacks
CAP_SYS_RESOURCE), containerd 2.x's unprivileged ports/ICMP pod sysctls (off by default in 1.x; on
in criproxy) and pod netns pinned under its state dir so cleanup finds them.

Which containerd runs is ``CRIPROXY_TEST_CONTAINERD``: ``1.6`` (the default) is the system's own
package; ``1.7`` and ``2.1`` are Debian's newer builds that ``scripts/fetch-debian-binaries.sh``
unpacked under ``CRIPROXY_TESTENV_DIR``. The daemon runs with that package's ``usr/bin`` first on
PATH, so it starts the shim of its own release (runc is the system's). 1.x reads a version 2
config; 2.x a version 3 one, where the CRI plugin is split in ``io.containerd.cri.v1.images`` and
``io.containerd.cri.v1.runtime`` (plus the server part, still ``io.containerd.grpc.v1.cri``). From
1.7 on NRI is built in and on, so it gets its own socket and plugin dirs under the session (never
the machine's ``/var/run/nri``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from .cni import CNI_BIN_DIR
from .proc import Daemon, HarnessError, kill_trees, pids_with_cmdline, run, unmount_under, wait_until

DEFAULT_RUNC_ROOT = "/run/containerd/runc"
TESTENV_DIR = Path(os.environ.get("CRIPROXY_TESTENV_DIR", "/var/lib/criproxy-testenv"))
SYSTEM_BIN_DIR = Path("/usr/bin")
VERSIONS = ("1.6", "1.7", "2.1")


def selected_version() -> str:
    """The containerd release line under test (``CRIPROXY_TEST_CONTAINERD``, default 1.6)."""
    version = os.environ.get("CRIPROXY_TEST_CONTAINERD", "1.6")
    if version not in VERSIONS:
        raise HarnessError(f"CRIPROXY_TEST_CONTAINERD={version!r}: expected one of {', '.join(VERSIONS)}")
    return version


def bin_dir(version: str) -> Path:
    """Where that release's ``containerd``, ``ctr`` and ``containerd-shim-runc-v2`` are."""
    if version == "1.6":
        return SYSTEM_BIN_DIR  # Debian 12's own package
    d = TESTENV_DIR / f"containerd-{version}" / "usr" / "bin"
    if not (d / "containerd").is_file():
        raise HarnessError(f"containerd {version} is not in {d.parent.parent}: run scripts/install-test-deps.sh "
                           "(as root) to fetch it")
    return d


def binary_version(binary: Path) -> str:
    """``1.7.24~ds1`` from ``containerd --version`` (the upstream part Debian's build reports)."""
    out = run([str(binary), "--version"], timeout=30)
    m = re.search(r"\sv?(\d+\.\d+\.\d+\S*)", out)
    if m is None:
        raise HarnessError(f"cannot read a version from {binary} --version: {out!r}")
    return m.group(1)


class Containerd:
    """containerd under ``base`` (keep ``base`` short: socket paths must stay under ~100 chars)."""

    def __init__(self, base: Path, sandbox_image: str, cni_conf_dir: Path, hosts_dir: Path,
                 version: str | None = None) -> None:
        self.release = version or selected_version()
        self.bin_dir = bin_dir(self.release)
        self.binary = self.bin_dir / "containerd"
        self.ctr_binary = str(self.bin_dir / "ctr")
        self.version = binary_version(self.binary)
        if not self.version.startswith(self.release + "."):
            raise HarnessError(f"{self.binary} is containerd {self.version}, not {self.release}")
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.address = base / "containerd.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.sandbox_image = sandbox_image
        self.cni_conf_dir = cni_conf_dir
        self.hosts_dir = hosts_dir
        self.nri_socket = base / "nri.sock"
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        self.daemon = Daemon("containerd", [str(self.binary), "--config", str(self.config)], self.log, env=env)

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def has_nri(self) -> bool:
        """NRI is built in (and on by default) from containerd 1.7."""
        major, minor = (int(x) for x in self.version.split(".")[:2])
        return (major, minor) >= (1, 7)

    def config_toml(self) -> str:
        return self._config_v3() if self.major >= 2 else self._config_v2()

    def _config_v2(self) -> str:
        """containerd 1.x: one CRI plugin ``io.containerd.grpc.v1.cri`` holds every CRI setting."""
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
""" + (self._nri_section('plugins."io.containerd.nri.v1.nri"') if self.has_nri else "")

    def _nri_section(self, table: str) -> str:
        """NRI (1.7 on) listens on a machine-wide socket by default: keep each session's private."""
        nri_dir = self.base / "nri"
        return f"""
[{table}]
  socket_path = "{self.nri_socket}"
  plugin_path = "{nri_dir / "plugins"}"
  plugin_config_path = "{nri_dir / "conf.d"}"
"""

    def _config_v3(self) -> str:
        """containerd 2.x: images and runtime halves of the CRI, the server part, NRI kept private."""
        images = "plugins.'io.containerd.cri.v1.images'"
        runtime = "plugins.'io.containerd.cri.v1.runtime'"
        return f"""version = 3
root = '{self.root}'
state = '{self.state}'

[grpc]
  address = '{self.address}'

[ttrpc]
  address = '{self.address}.ttrpc'

[debug]
  address = ''
  level = 'info'

[metrics]
  address = ''

[{images}]
  snapshotter = 'overlayfs'

[{images}.pinned_images]
  sandbox = '{self.sandbox_image}'

[{images}.registry]
  config_path = '{self.hosts_dir}'

[{runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[{runtime}.cni]
  bin_dirs = ['{CNI_BIN_DIR}']
  conf_dir = '{self.cni_conf_dir}'
  max_conf_num = 1

[{runtime}.containerd]
  default_runtime_name = 'runc'

[{runtime}.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[{runtime}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'

[plugins.'io.containerd.transfer.v1.local']
  config_path = '{self.hosts_dir}'
""" + self._nri_section("plugins.'io.containerd.nri.v1.nri'")

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
        res = subprocess.run([self.ctr_binary, "-a", str(self.address), "version"], capture_output=True, timeout=10)
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
        return run([self.ctr_binary, "-a", str(self.address), *ns, *args], timeout=timeout, check=check)

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
