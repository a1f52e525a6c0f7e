"""A container flooding its log vs the RPCs beside it, criproxy vs the built-in CRI, in one run.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_logs [SECONDS]``.

For each of two containers — busybox ``yes`` (``y`` lines) and ``yes ''`` (empty lines) — each
runtime runs the container for SECONDS (default 30) in total, in WINDOWS windows alternating between
the runtimes (one flood at a time: one chatty pod on a node, the same machine drift for both). During
its window, Version and ListContainers are called on that runtime's socket in turn, 20 ms apart, and
their p50 and p99 reported; a helper thread rotates the log file every 0.5 s as kubelet does (rename
+ ReopenContainerLog, then the rotated file is measured and deleted), which keeps the disk use bounded
and gives the log bytes/s each runtime wrote (ratio criproxy / built-in: above 1 means criproxy kept
up with more of the flood).

Target (issue 9): Version and ListContainers p99 through criproxy < 50 ms during the flood.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchmarks.common import dump, percentile, report, rss_mib
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment

ROTATE_EVERY = 0.5
CALL_GAP = 0.02
WINDOWS = 4


class Side:
    """One runtime's pod, its flooding container, and the bytes rotated out of its log."""

    def __init__(self, name: str, client: CriClient, image: str, logs: Path) -> None:
        self.name, self.client, self.image = name, client, image
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=300)
        uid = str(uuid.uuid4())
        self.log_dir = logs / name
        self.pod_cfg = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=f"{name[:3]}-logs", namespace="bench", uid=uid),
            hostname=f"{name[:3]}-logs", log_directory=str(self.log_dir))
        self.pod_cfg.linux.cgroup_parent = f"/criproxy-bench/pod{uid}"
        self.pod = client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=self.pod_cfg),
                                                timeout=240).pod_sandbox_id
        self.cid = ""
        self.bytes = 0
        self.rotations = 0

    def start(self, name: str, args: list[str]) -> None:
        cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image=self.image),
                                  command=args, log_path=f"{name}.log")
        rt = self.client.runtime
        self.cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=self.pod, sandbox_config=self.pod_cfg,
                                                                 config=cfg)).container_id
        self.path = self.log_dir / f"{name}.log"
        self.bytes = 0
        self.rotations = 0
        rt.StartContainer(cri.StartContainerRequest(container_id=self.cid))

    def rotate(self) -> None:
        old = self.path.with_suffix(".1")
        os.rename(self.path, old)
        self.client.runtime.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=self.cid), timeout=60)
        self.bytes += old.stat().st_size
        old.unlink()
        self.rotations += 1

    def stop(self) -> None:
        rt = self.client.runtime
        rt.StopContainer(cri.StopContainerRequest(container_id=self.cid, timeout=0), timeout=120)
        if self.path.exists():
            self.bytes += self.path.stat().st_size
        rt.RemoveContainer(cri.RemoveContainerRequest(container_id=self.cid), timeout=120)
        self.path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        rt = self.client.runtime
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=self.pod), timeout=600)
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=self.pod), timeout=120)


def rotator(side: Side, stop: threading.Event, errors: list[str]) -> None:
    while not stop.wait(ROTATE_EVERY):
        try:
            side.rotate()
        except Exception as e:                  # reported, and the run goes on
            errors.append(f"{side.name}: {e!r}"[:300])


def window(side: Side, name: str, args: list[str], seconds: float, lat: dict[str, list[float]],
           errors: list[str]) -> float:
    """One flood under one runtime; its Version/ListContainers latencies appended to ``lat``."""
    side.start(name, args)
    stop = threading.Event()
    rot = threading.Thread(target=rotator, args=(side, stop, errors), daemon=True)
    rot.start()
    rt = side.client.runtime
    vreq, lreq = cri.VersionRequest(), cri.ListContainersRequest()
    t_start = time.monotonic()
    while time.monotonic() - t_start < seconds:
        for key, fn in (("version", lambda: rt.Version(vreq, timeout=120)),
                        ("list", lambda: rt.ListContainers(lreq, timeout=120))):
            t0 = time.perf_counter()
            fn()
            lat[key].append((time.perf_counter() - t0) * 1000)
            time.sleep(CALL_GAP)
    stop.set()
    rot.join()
    elapsed = time.monotonic() - t_start
    side.stop()
    return elapsed


def flood(ours: Side, theirs: Side, name: str, args: list[str], seconds: float, pid: int) -> dict[str, object]:
    """``seconds`` of flood per runtime, in WINDOWS alternating windows (one flood at a time)."""
    rss0 = rss_mib(pid)
    lat = {side.name: {"version": [], "list": []} for side in (ours, theirs)}
    written = {ours.name: 0, theirs.name: 0}
    elapsed = {ours.name: 0.0, theirs.name: 0.0}
    errors: list[str] = []
    rss_peak = rss0
    for w in range(WINDOWS):
        for side in (ours, theirs) if w % 2 == 0 else (theirs, ours):
            elapsed[side.name] += window(side, name, args, seconds / WINDOWS, lat[side.name], errors)
            written[side.name] += side.bytes
            if side is ours:
                rss_peak = max(rss_peak, rss_mib(pid))
    o, t = lat[ours.name], lat[theirs.name]
    res: dict[str, object] = {
        "version": report(f"[{name}] Version x{len(o['version'])}", o["version"], t["version"]),
        "list": report(f"[{name}] ListContainers x{len(o['list'])}", o["list"], t["list"]),
        "criproxy_log_mib_s": written[ours.name] / elapsed[ours.name] / 2**20,
        "builtin_log_mib_s": written[theirs.name] / elapsed[theirs.name] / 2**20,
        "criproxy_rss_growth_mib": rss_peak - rss0, "rotation_errors": errors[:5],
    }
    res["log_ratio"] = float(res["criproxy_log_mib_s"]) / max(1e-9, float(res["builtin_log_mib_s"]))  # type: ignore[arg-type]
    print(f"[{name}] log written: criproxy {res['criproxy_log_mib_s']:.1f} MiB/s, "
          f"built-in {res['builtin_log_mib_s']:.1f} MiB/s, ratio {res['log_ratio']:.2f}x; "
          f"criproxy RSS growth {rss_peak - rss0:.1f} MiB; criproxy Version p99 "
          f"{percentile(o['version'], 99):.1f} ms, ListContainers p99 {percentile(o['list'], 99):.1f} ms "
          f"(target < 50 ms); rotation errors: {len(errors)}", flush=True)
    return res


def bench(env: Environment, seconds: float) -> dict[str, object]:
    results: dict[str, object] = {"bench": "logs", "seconds": seconds}
    logs = Path(tempfile.mkdtemp(prefix="criproxy-bench-logs-", dir="/var/tmp"))   # on disk, not tmpfs
    proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
    try:
        with proc.client() as ours_c, env.builtin_cri() as theirs_c:
            ours = Side("criproxy", ours_c, env.busybox_image, logs)
            theirs = Side("builtin", theirs_c, env.busybox_image, logs)
            try:
                results["yes"] = flood(ours, theirs, "yes", ["yes"], seconds, proc.pid or 0)
                results["newlines"] = flood(ours, theirs, "newlines", ["yes", ""], seconds, proc.pid or 0)
            finally:
                ours.cleanup()
                theirs.cleanup()
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return results


def main(seconds: float = 30) -> None:
    env = Environment.create()
    try:
        dump(bench(env, seconds))
    finally:
        env.close()


if __name__ == "__main__":
    main(*[float(a) for a in sys.argv[1:]])
