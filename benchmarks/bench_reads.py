"""The reads a kubelet makes all the time, and CreateContainer, through criproxy vs containerd's
built-in CRI, on the same containerd, interleaved, in one run.

Run as root from the repository root:
``.venv/bin/python -m benchmarks.bench_reads [PODS] [PER_POD] [CALLS]``.

1. Both runtimes grow to PODS pods (default 30) of PER_POD running containers (default 10: 300 in
   all), the two alternating container by container; p50/p95 of CreateContainer over all of them.
2. With that many containers: Version (the floor: no work at all), ImageStatus (busybox by tag),
   ListImages, ImageFsInfo, ContainerStatus and PodSandboxStatus (random ones), ListContainers and
   ListPodSandbox, CALLS calls each (default 1000), interleaved in blocks of 50.

Targets (issue 12): ImageStatus, ListImages, ContainerStatus, PodSandboxStatus p50 <= 1.5x;
CreateContainer p50 <= 1.0x; ListContainers/ListPodSandbox p50 <= 1.0x at 300 containers.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_containers import container_config, pod_config
from benchmarks.common import dump, report, rss_mib, time_interleaved
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment


class Side:
    def __init__(self, name: str, client: CriClient, image: str) -> None:
        self.name, self.client, self.image = name, client, image
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=300)
        self.pods: list[tuple[str, cri.PodSandboxConfig]] = []
        self.containers: list[str] = []
        self.create_ms: list[float] = []

    def add_pod(self, i: int) -> None:
        cfg = pod_config(f"{self.name[:3]}{i}")
        pid = self.client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg), timeout=240).pod_sandbox_id
        self.pods.append((pid, cfg))

    def add_container(self, pod: int, i: int) -> None:
        pid, cfg = self.pods[pod]
        rt = self.client.runtime
        t0 = time.perf_counter()
        cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pid, sandbox_config=cfg,
                                                            config=container_config(self.image, i))).container_id
        self.create_ms.append((time.perf_counter() - t0) * 1000)
        rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=120)
        self.containers.append(cid)

    def cleanup(self) -> None:
        rt = self.client.runtime
        for pid, _ in self.pods:
            try:
                rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=600)
                rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=600)
            except Exception as e:        # the other runtime still gets cleaned up
                print(f"{self.name}: cleanup of pod {pid[:12]}: {e}", flush=True)


def handler_us(debug_socket: Path) -> dict[str, float]:
    """Mean time inside criproxy per CRI method (the edge's own latency histogram: from the request
    reaching the handler wrapper to its answer), microseconds; what is left of a round trip is gRPC's."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(debug_socket))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: criproxy\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in data.decode().splitlines():
        for prefix, into in (("criproxy_cri_request_seconds_sum{", sums),
                             ("criproxy_cri_request_seconds_count{", counts)):
            if line.startswith(prefix):
                into[line.split('method="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return {m: sums[m] / counts[m] * 1e6 for m in sums if counts.get(m)}


def grow(a: Side, b: Side, pods: int, per_pod: int) -> None:
    for p in range(pods):
        for side in (a, b) if p % 2 == 0 else (b, a):
            side.add_pod(p)
        for i in range(per_pod):
            for side in (a, b) if i % 2 == 0 else (b, a):
                side.add_container(p, i)


def pair(ours: Side, theirs: Side, make: Callable[[Side, random.Random], Callable[[], object]],
         calls: int) -> tuple[list[float], list[float]]:
    rnd = random.Random(1)
    return time_interleaved(make(ours, rnd), make(theirs, rnd), calls)


def bench(env: Environment, pods: int, per_pod: int, calls: int) -> dict[str, object]:
    total = pods * per_pod
    results: dict[str, object] = {"bench": "reads", "pods": pods, "containers": total, "calls": calls}
    proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
    with proc.client() as ours_c, env.builtin_cri() as theirs_c:
        ours, theirs = Side("criproxy", ours_c, env.busybox_image), Side("builtin", theirs_c, env.busybox_image)
        try:
            grow(ours, theirs, pods, per_pod)
            results["create"] = report(f"CreateContainer x{total}", ours.create_ms[2:], theirs.create_ms[2:], 95)
            image = env.busybox_image
            reads: list[tuple[str, Callable[[Side, random.Random], Callable[[], object]]]] = [
                ("Version", lambda s, r: lambda: s.client.runtime.Version(cri.VersionRequest())),
                ("ImageStatus", lambda s, r: lambda: s.client.image.ImageStatus(
                    cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))),
                ("ListImages", lambda s, r: lambda: s.client.image.ListImages(cri.ListImagesRequest())),
                ("ImageFsInfo", lambda s, r: lambda: s.client.image.ImageFsInfo(cri.ImageFsInfoRequest())),
                ("ContainerStatus", lambda s, r: lambda: s.client.runtime.ContainerStatus(
                    cri.ContainerStatusRequest(container_id=r.choice(s.containers)))),
                ("PodSandboxStatus", lambda s, r: lambda: s.client.runtime.PodSandboxStatus(
                    cri.PodSandboxStatusRequest(pod_sandbox_id=r.choice(s.pods)[0]))),
                ("ListContainers", lambda s, r: lambda: s.client.runtime.ListContainers(cri.ListContainersRequest())),
                ("ListPodSandbox", lambda s, r: lambda: s.client.runtime.ListPodSandbox(cri.ListPodSandboxRequest())),
            ]
            for name, make in reads:
                pair(ours, theirs, make, 100)                             # warm both sides
                mine, base = pair(ours, theirs, make, calls)
                results[name] = report(f"{name} ({total} containers) x{calls}", mine, base)
            inside = handler_us(proc.state / "debug.sock")
            names = [*(r[0] for r in reads), "CreateContainer"]
            results["criproxy_handler_mean_us"] = {n: round(inside[n], 1) for n in names if n in inside}
            print(f"mean time inside criproxy per call (µs, edge + handler): {results['criproxy_handler_mean_us']}",
                  flush=True)
            results["criproxy_rss_mib"] = rss_mib(proc.pid or 0)
            print(f"criproxy RSS with {total} running containers: {results['criproxy_rss_mib']:.1f} MiB", flush=True)
        finally:
            ours.cleanup()
            theirs.cleanup()
    return results


def main(pods: int = 30, per_pod: int = 10, calls: int = 1000) -> None:
    env = Environment.create()
    try:
        dump(bench(env, pods, per_pod, calls))
    finally:
        env.close()


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
