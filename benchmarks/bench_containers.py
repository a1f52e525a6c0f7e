"""Containers through criproxy vs containerd's built-in CRI, on the same containerd, in one run.

Run as root from the repository root:
``.venv/bin/python -m benchmarks.bench_containers [STARTS] [EXECS] [TOTAL] [LIST_CALLS]``.

1. CreateContainer+StartContainer for STARTS containers (default 50) in one pod per runtime, the two
   runtimes alternating container by container; p50/p95 of create, start and the pair.
2. ExecSync (``true``) p50 over EXECS calls (default 200), interleaved in blocks.
3. Both runtimes grown to TOTAL running containers (default 300); then ListContainers and
   ContainerStatus p50 over LIST_CALLS calls each, interleaved; criproxy's RSS at that size.

Targets (issue 5): create+start p50 <= 1.0x; ExecSync p50 <= 1.1x; ListContainers p50 <= 1.0x;
criproxy RSS with 300 containers <= 150 MiB.
"""

from __future__ import annotations

import random
import sys
import time
import uuid

from benchmarks.common import dump, report, rss_mib, time_interleaved
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment


def pod_config(prefix: str) -> cri.PodSandboxConfig:
    uid = str(uuid.uuid4())
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=f"{prefix}-bench", namespace="bench", uid=uid),
        hostname=f"{prefix}-bench", log_directory=f"/tmp/criproxy-bench/{uid}",
        labels={"io.kubernetes.pod.name": f"{prefix}-bench", "io.kubernetes.pod.namespace": "bench"})
    cfg.linux.cgroup_parent = f"/criproxy-bench/pod{uid}"
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


def container_config(image: str, i: int) -> cri.ContainerConfig:
    cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=f"c{i}"), image=cri.ImageSpec(image=image),
                              command=["sleep", "1000000"], log_path=f"c{i}/0.log",
                              labels={"io.kubernetes.container.name": f"c{i}"})
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    return cfg


class Side:
    def __init__(self, name: str, client: CriClient, image: str) -> None:
        self.name, self.client, self.image = name, client, image
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=300)
        self.pod_cfg = pod_config(name[:3])
        self.pod = client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=self.pod_cfg),
                                                timeout=240).pod_sandbox_id
        self.ids: list[str] = []
        self.t: dict[str, list[float]] = {"create": [], "start": [], "both": []}

    def create_start(self, i: int) -> None:
        rt = self.client.runtime
        t0 = time.perf_counter()
        cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=self.pod, sandbox_config=self.pod_cfg,
                                                            config=container_config(self.image, i))).container_id
        t1 = time.perf_counter()
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        t2 = time.perf_counter()
        self.ids.append(cid)
        for k, v in (("create", t1 - t0), ("start", t2 - t1), ("both", t2 - t0)):
            self.t[k].append(v * 1000)

    def cleanup(self) -> None:
        rt = self.client.runtime
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=self.pod), timeout=600)
        for cid in self.ids:
            rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid), timeout=120)
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=self.pod), timeout=120)


def row(name: str, ours: list[float], theirs: list[float]) -> dict[str, float]:
    return report(name, ours, theirs, tail=95)


def grow(a: Side, b: Side, upto: int) -> None:
    while len(a.ids) < upto or len(b.ids) < upto:
        i = len(a.ids)
        for side in (a, b) if i % 2 == 0 else (b, a):
            if len(side.ids) < upto:
                side.create_start(len(side.ids))


def bench(env: Environment, starts: int, execs: int, total: int, list_calls: int) -> dict[str, object]:
    results: dict[str, object] = {"bench": "containers", "starts": starts, "execs": execs, "total": total}
    proc = env.new_criproxy("bench", extra_args=["--log-level", "info"])
    with proc.client() as ours_c, env.builtin_cri() as theirs_c:
        ours, theirs = Side("criproxy", ours_c, env.busybox_image), Side("builtin", theirs_c, env.busybox_image)
        try:
            grow(ours, theirs, 2)                                   # warm-up: shim, image caches
            for side in (ours, theirs):
                side.t = {k: [] for k in side.t}
            grow(ours, theirs, 2 + starts)
            for k in ("create", "start", "both"):
                results[k] = row(f"{k} x{starts}", ours.t[k], theirs.t[k])
            ereq_o = cri.ExecSyncRequest(container_id=ours.ids[0], cmd=["true"], timeout=10)
            ereq_t = cri.ExecSyncRequest(container_id=theirs.ids[0], cmd=["true"], timeout=10)
            eo, et = time_interleaved(lambda: ours_c.runtime.ExecSync(ereq_o),
                                      lambda: theirs_c.runtime.ExecSync(ereq_t), execs, block=20)
            results["exec_sync"] = row(f"ExecSync x{execs}", eo, et)
            grow(ours, theirs, total)
            lreq = cri.ListContainersRequest()
            assert len(ours_c.runtime.ListContainers(lreq).containers) >= total
            lo, lt = time_interleaved(lambda: ours_c.runtime.ListContainers(lreq),
                                      lambda: theirs_c.runtime.ListContainers(lreq), list_calls)
            results["list"] = row(f"ListContainers ({total} containers) x{list_calls}", lo, lt)
            rnd = random.Random(1)
            so, st = time_interleaved(
                lambda: ours_c.runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=rnd.choice(ours.ids))),
                lambda: theirs_c.runtime.ContainerStatus(
                    cri.ContainerStatusRequest(container_id=rnd.choice(theirs.ids))), list_calls)
            results["status"] = row(f"ContainerStatus ({total} containers) x{list_calls}", so, st)
            results["criproxy_rss_mib"] = rss_mib(proc.pid or 0)
            print(f"criproxy RSS with {total} running containers: {results['criproxy_rss_mib']:.1f} MiB "
                  "(target <= 150 MiB)", flush=True)
        finally:
            ours.cleanup()
            theirs.cleanup()
    return results


def main(starts: int = 50, execs: int = 200, total: int = 300, list_calls: int = 500) -> None:
    env = Environment.create()
    try:
        dump(bench(env, starts, execs, total, list_calls))
    finally:
        env.close()


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
