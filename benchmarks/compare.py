"""The side-by-side benchmark: criproxy vs containerd's built-in CRI through ``criproxy compare``.

Run as root from the repository root (after ``scripts/install-test-deps.sh``)::

    .venv/bin/python -m benchmarks.compare [--out DIR] [COMPARE OPTIONS ...]

It brings up the project's test environment (a private containerd with its built-in CRI plugin, a
local registry holding the test images, one CNI network per runtime), starts criproxy on that
containerd, and runs ``criproxy compare`` with A = criproxy and B = the built-in CRI, every scenario,
the OCI spec diff on, and writes ``report.json`` and ``report.html`` to ``--out`` (default
``benchmarks/out``). Options after ``--out`` go to ``criproxy compare`` unchanged and override the
defaults below (e.g. ``--scenario kubelet-like --duration 60``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.env import Environment

DEFAULTS = ["--reps", "30", "--pods", "10", "--containers", "3", "--concurrency", "4", "--duration", "30",
            "--interval", "1"]
SCENARIOS = ["pod-lifecycle", "container-lifecycle", "exec-sync", "image-pull", "list-status", "churn",
             "stats", "kubelet-like"]


def main(argv: list[str]) -> int:
    out = Path("benchmarks/out")
    if argv[:1] == ["--out"]:
        out, argv = Path(argv[1]), argv[2:]
    env = Environment.create()
    try:
        proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
        ctrd = env.ctrd
        scenarios = [] if "--scenario" in argv else [x for s in SCENARIOS for x in ("--scenario", s)]
        cmd = [sys.executable, "-m", "criproxy", "compare", "--a", str(proc.socket), "--a-name", "criproxy",
               "--b", str(env.containerd_address), "--b-name", "built-in CRI",
               "--image", env.busybox_image, "--out", str(out),
               "--log-dir", str(env.scratch_dir("compare-logs")),
               "--containerd", str(env.containerd_address), "--a-namespace", proc.namespace,
               "--b-namespace", "k8s.io", "--a-dir", str(proc.root), "--a-dir", str(proc.state),
               "--b-dir", str(ctrd.root / "io.containerd.grpc.v1.cri"),
               "--b-dir", str(ctrd.state / "io.containerd.grpc.v1.cri"), *DEFAULTS, *scenarios, *argv]
        return subprocess.run(cmd, check=False).returncode
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
