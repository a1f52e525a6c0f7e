"""Pod sandbox lifecycle through criproxy vs containerd's built-in CRI, on the same containerd, one run.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_sandbox [PODS] [LISTED]``.
Each runtime uses its own CNI network (bridge ``cpx{N}`` for criproxy, ``cpk{N}`` for the built-in).

1. RunPodSandbox, then StopPodSandbox, then RemovePodSandbox for PODS pods (default 50), the two
   runtimes alternating pod by pod so CPU steal hits both alike; p50/p95 per call.
2. ListPodSandbox with LISTED sandboxes (default 200) in each runtime (created and stopped, so 400
   pause processes never run at once), N calls interleaved in blocks.

Targets (issue 4): RunPodSandbox p50 <= 1.0x; ListPodSandbox p50 <= 1.0x.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import dump, report, time_interleaved
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment


def pod_config(prefix: str, i: int) -> cri.PodSandboxConfig:
    """What a kubelet sends for a plain pod (pod network, own PID namespace per container)."""
    uid = str(uuid.uuid4())
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=f"{prefix}-{i}", namespace="bench", uid=uid),
        hostname=f"{prefix}-{i}", log_directory=f"/tmp/criproxy-bench/{uid}",
        labels={"io.kubernetes.pod.name": f"{prefix}-{i}", "io.kubernetes.pod.namespace": "bench"},
        dns_config=cri.DNSConfig(servers=["10.96.0.10"], searches=["bench.svc.cluster.local"],
                                 options=["ndots:5"]))
    cfg.linux.cgroup_parent = f"/criproxy-bench/pod{uid}"
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def pull_pause(client: CriClient, ref: str) -> None:
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=300)


def lifecycle(ours: CriClient, theirs: CriClient, pods: int) -> dict[str, dict[str, list[float]]]:
    """Run, then stop, then remove ``pods`` pods on each runtime, alternating."""
    t: dict[str, dict[str, list[float]]] = {k: {"criproxy": [], "builtin": []} for k in ("run", "stop", "remove")}
    ids: dict[str, list[str]] = {"criproxy": [], "builtin": []}
    clients = (("criproxy", ours), ("builtin", theirs))
    for i in range(pods):
        for name, c in clients if i % 2 == 0 else reversed(clients):
            req = cri.RunPodSandboxRequest(config=pod_config(name[:3], i))
            t0 = time.perf_counter()
            ids[name].append(c.runtime.RunPodSandbox(req, timeout=240).pod_sandbox_id)
            t["run"][name].append((time.perf_counter() - t0) * 1000)
    for verb, call in (("stop", "StopPodSandbox"), ("remove", "RemovePodSandbox")):
        req_cls = getattr(cri, f"{call}Request")
        for i in range(pods):
            for name, c in clients if i % 2 == 0 else reversed(clients):
                req = req_cls(pod_sandbox_id=ids[name][i])
                t[verb][name].append(timed(lambda c=c, req=req, call=call: getattr(c.runtime, call)(req)))
    return t


def populate(client: CriClient, prefix: str, n: int) -> list[str]:
    """n sandboxes, each stopped right after it started (listing cost depends on count, not state)."""
    ids = []
    for i in range(n):
        sid = client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config(prefix, i)),
                                           timeout=240).pod_sandbox_id
        client.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))
        ids.append(sid)
    return ids


def remove_all(client: CriClient, ids: list[str]) -> None:
    for sid in ids:
        client.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))


def remove_cgroup_parents() -> None:
    """The kubelet owns pod-level cgroups; here the benchmark made them (via cgroup_parent), so it
    removes the empty ones it left."""
    for h in Path("/sys/fs/cgroup").iterdir():
        for d in [*h.glob("criproxy-bench/pod*"), h / "criproxy-bench"]:
            with contextlib.suppress(OSError):
                d.rmdir()


def row(name: str, ours: list[float], theirs: list[float]) -> dict[str, float]:
    return report(name, ours, theirs, tail=95)


def main(pods: int = 50, listed: int = 200, list_calls: int = 500) -> None:
    env = Environment.create()
    results: dict[str, object] = {"bench": "sandbox", "pods": pods, "listed": listed}
    try:
        proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
        with proc.client() as ours, env.builtin_cri() as theirs:
            pull_pause(ours, env.pause_image)
            pull_pause(theirs, env.pause_image)
            lifecycle(ours, theirs, 2)                       # warm-up: shims, CNI, caches
            t = lifecycle(ours, theirs, pods)
            for verb in ("run", "stop", "remove"):
                results[verb] = row(f"{verb} x{pods}", t[verb]["criproxy"], t[verb]["builtin"])
            mine, base = populate(ours, "lo", listed), populate(theirs, "lb", listed)
            req = cri.ListPodSandboxRequest()
            assert len(ours.runtime.ListPodSandbox(req).items) >= listed
            lm, lb = time_interleaved(lambda: ours.runtime.ListPodSandbox(req),
                                      lambda: theirs.runtime.ListPodSandbox(req), list_calls)
            results["list"] = row(f"ListPodSandbox ({listed} sandboxes) x{list_calls}", lm, lb)
            remove_all(ours, mine)
            remove_all(theirs, base)
        dump(results)
    finally:
        env.close()
        remove_cgroup_parents()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
