"""Version round trip through criproxy vs containerd's built-in CRI, and criproxy's idle RSS.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_version [N]``.
It brings up the test environment (private containerd with its built-in CRI plugin enabled, a
criproxy on the same containerd), then times N Version calls on each socket, interleaved.
Targets (issue 2): p50 <= 2x the built-in; idle RSS <= 60 MiB.
"""

from __future__ import annotations

import sys

from benchmarks.common import dump, report, rss_mib, time_interleaved
from criproxy.protos import cri
from tests.harness.env import Environment


def main(n: int = 2000) -> None:
    env = Environment.create()
    try:
        proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
        with proc.client() as ours, env.builtin_cri() as theirs:
            req = cri.VersionRequest()
            for _ in range(200):  # warm both channels and servers
                ours.runtime.Version(req)
                theirs.runtime.Version(req)
            idle = rss_mib(proc.pid or 0)
            mine, base = time_interleaved(lambda: ours.runtime.Version(req), lambda: theirs.runtime.Version(req), n)
        row = report(f"Version x{n}", mine, base)
        print(f"criproxy idle RSS: {idle:.1f} MiB (target <= 60 MiB)")
        dump({"bench": "version", "calls": n, **row, "criproxy_idle_rss_mib": idle})
    finally:
        env.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
