"""The workloads: each drives both sides with the same calls, alternating which side goes first.

A scenario makes what it needs untimed (images, pods for the reads), times the calls it is about,
and removes everything it made, also after a failure. Objects carry the run label so list answers
can be narrowed to this run's objects.
"""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from criproxy import protos as p
from criproxy.compare.mask import RUN_LABEL
from criproxy.compare.session import CallFailed, Recorder, Side, SpecPair, order

cri = p.cri


@dataclass
class Params:
    """Sizes and inputs of the workload (the ``compare`` options)."""

    image: str
    pull_image: str = ""
    reps: int = 20
    pods: int = 5
    containers: int = 2
    concurrency: int = 4
    duration: float = 20.0
    interval: float = 1.0
    command: list[str] = field(default_factory=lambda: ["sleep", "3600"])
    exec_command: list[str] = field(default_factory=lambda: ["true"])
    pod_config: dict[str, Any] | None = None
    log_dir: Path = Path("/tmp/criproxy-compare")
    pull_timeout: float = 600.0


class Ctx:
    """What a scenario works with: both sides, the recorder, the parameters, progress and spec checks."""

    def __init__(self, a: Side, b: Side, rec: Recorder, params: Params,
                 progress: Callable[[str, int, int], None],
                 spec_check: Callable[[SpecPair], None]) -> None:
        self.a, self.b, self.rec, self.params = a, b, rec, params
        self.progress, self.spec_check = progress, spec_check
        self._lock = threading.Lock()
        self._n = 0

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b

    def seq(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    # -- untimed helpers ------------------------------------------------------------------------

    def quiet(self, side: Side, rpc: str, request: Any, timeout: float | None = None) -> Any:
        """A call outside the measurement (setup and cleanup)."""
        return getattr(side.stub_for(rpc), rpc)(request, timeout=timeout or side.timeout)

    def ensure_image(self, ref: str) -> None:
        for side in self.sides:
            status = self.quiet(side, "ImageStatus", cri.ImageStatusRequest(image=cri.ImageSpec(image=ref)))
            if not status.image.id:
                self.quiet(side, "PullImage", cri.PullImageRequest(image=cri.ImageSpec(image=ref)),
                           timeout=self.params.pull_timeout)

    def pod_config(self, side: Side, key: str | None = None) -> Any:
        """The pod config; pods made with the same ``key`` on both sides get the same request but for
        the side's letter in the name (both endpoints may be one runtime, where names must differ),
        which the spec diff masks; without a key each pod gets a name of its own."""
        name = (f"compare-{self.rec.run_id[:6]}-{self.rec.scenario}-{key if key is not None else self.seq()}"
                f"-{side.key}")
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"criproxy-compare/{self.rec.run_id}/{name}"))
        cfg = cri.PodSandboxConfig()
        if self.params.pod_config:
            json_format.ParseDict(copy.deepcopy(self.params.pod_config), cfg)
        cfg.metadata.name, cfg.metadata.uid = name, uid
        cfg.metadata.namespace = cfg.metadata.namespace or "compare"
        cfg.hostname = cfg.hostname or name
        log_dir = self.params.log_dir / side.key / uid
        log_dir.mkdir(parents=True, exist_ok=True)
        cfg.log_directory = str(log_dir)
        cfg.labels.update({RUN_LABEL: self.rec.run_id, "io.kubernetes.pod.name": name,
                           "io.kubernetes.pod.namespace": cfg.metadata.namespace, "io.kubernetes.pod.uid": uid})
        return cfg

    def container_config(self, name: str, command: list[str] | None = None) -> Any:
        return cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image=self.params.image),
            command=command or self.params.command, log_path=f"{name}/0.log",
            labels={RUN_LABEL: self.rec.run_id, "io.kubernetes.container.name": name})

    def run_pod(self, side: Side, key: str | None = None, timed: bool = True,
                scenario: str | None = None) -> tuple[str, Any]:
        cfg = self.pod_config(side, key)
        req = cri.RunPodSandboxRequest(config=cfg)
        resp = (self.rec.call(side, "RunPodSandbox", req, scenario=scenario) if timed
                else self.quiet(side, "RunPodSandbox", req))
        side.pods.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id), cfg

    def start_container(self, side: Side, pod: str, pod_cfg: Any, name: str, timed: bool = True,
                        scenario: str | None = None) -> str:
        req = cri.CreateContainerRequest(pod_sandbox_id=pod, config=self.container_config(name),
                                         sandbox_config=pod_cfg)
        if timed:
            cid = str(self.rec.call(side, "CreateContainer", req, scenario=scenario).container_id)
            side.containers.append(cid)
            self.rec.call(side, "StartContainer", cri.StartContainerRequest(container_id=cid), scenario=scenario)
        else:
            cid = str(self.quiet(side, "CreateContainer", req).container_id)
            side.containers.append(cid)
            self.quiet(side, "StartContainer", cri.StartContainerRequest(container_id=cid))
        return cid

    def remove_pod(self, side: Side, pod: str, timed: bool = False, scenario: str | None = None) -> None:
        for rpc, req in (("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=pod)),
                         ("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=pod))):
            if timed:
                self.rec.call(side, rpc, req, scenario=scenario)
            else:
                self.quiet(side, rpc, req)
        if pod in side.pods:
            side.pods.remove(pod)

    def cleanup(self) -> None:
        """Remove every pod this scenario left (its containers go with it); errors are not fatal."""
        for side in self.sides:
            for pod in list(side.pods):
                try:
                    self.remove_pod(side, pod)
                except grpc.RpcError:
                    side.pods.remove(pod)
            side.containers.clear()

    def populate(self, pods: int, containers: int) -> dict[str, list[tuple[str, list[str]]]]:
        """``pods`` pods with ``containers`` running containers on each side (untimed, alternating)."""
        made: dict[str, list[tuple[str, list[str]]]] = {"a": [], "b": []}
        self.ensure_image(self.params.image)
        for i in range(pods):
            for side in order(i, *self.sides):
                pod, cfg = self.run_pod(side, str(i), timed=False)
                ids = [self.start_container(side, pod, cfg, f"c{j}", timed=False) for j in range(containers)]
                made[side.key].append((pod, ids))
            self.progress("setup", i + 1, pods)
        return made


# -- scenarios ----------------------------------------------------------------------------------

def pod_lifecycle(ctx: Ctx) -> None:
    """RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox, one pod at a time."""
    for i in range(ctx.params.reps):
        for side in order(i, *ctx.sides):
            pod, _ = ctx.run_pod(side, str(i))
            ctx.rec.call(side, "PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=pod))
            ctx.remove_pod(side, pod, timed=True)
        ctx.progress("pod-lifecycle", i + 1, ctx.params.reps)


def container_lifecycle(ctx: Ctx) -> None:
    """Create, Start, ContainerStatus, Stop, Remove in one pod per side; the first pair's specs are
    compared while both containers exist."""
    ctx.ensure_image(ctx.params.image)
    pods = {side.key: ctx.run_pod(side, "pod", timed=False) for side in ctx.sides}
    for i in range(ctx.params.reps):
        ids: dict[str, str] = {}
        for side in order(i, *ctx.sides):
            pod, cfg = pods[side.key]
            req = cri.CreateContainerRequest(pod_sandbox_id=pod, config=ctx.container_config(f"c{i}"),
                                             sandbox_config=cfg)
            ids[side.key] = str(ctx.rec.call(side, "CreateContainer", req).container_id)
        if i == 0:
            ctx.spec_check(SpecPair("container-lifecycle", {
                k: (pods[k][0], v, pods[k][1].metadata.name, pods[k][1].metadata.uid) for k, v in ids.items()}))
        for side in order(i, *ctx.sides):
            cid = ids[side.key]
            ctx.rec.call(side, "StartContainer", cri.StartContainerRequest(container_id=cid))
            ctx.rec.call(side, "ContainerStatus", cri.ContainerStatusRequest(container_id=cid))
            ctx.rec.call(side, "StopContainer", cri.StopContainerRequest(container_id=cid, timeout=0))
            ctx.rec.call(side, "RemoveContainer", cri.RemoveContainerRequest(container_id=cid))
        ctx.progress("container-lifecycle", i + 1, ctx.params.reps)


def exec_sync(ctx: Ctx) -> None:
    """ExecSync of the exec command in one running container per side."""
    made = ctx.populate(1, 1)
    target = {k: v[0][1][0] for k, v in made.items()}
    for i in range(ctx.params.reps):
        for side in order(i, *ctx.sides):
            ctx.rec.call(side, "ExecSync", cri.ExecSyncRequest(container_id=target[side.key],
                                                               cmd=ctx.params.exec_command, timeout=30))
        ctx.progress("exec-sync", i + 1, ctx.params.reps)


def image_pull(ctx: Ctx) -> None:
    """PullImage with the image removed from both sides before every pull (the sides share
    containerd's content store, so a pull by one would otherwise be a cache hit for the other)."""
    ref = ctx.params.pull_image or ctx.params.image
    spec = cri.ImageSpec(image=ref)
    for i in range(ctx.params.reps):
        for side in order(i, *ctx.sides):
            for s in ctx.sides:
                try:
                    ctx.quiet(s, "RemoveImage", cri.RemoveImageRequest(image=spec))
                except grpc.RpcError:
                    pass
            ctx.rec.call(side, "PullImage", cri.PullImageRequest(image=spec), timeout=ctx.params.pull_timeout)
        ctx.progress("image-pull", i + 1, ctx.params.reps)
    ctx.ensure_image(ref)


def _reads(ctx: Ctx, side: Side, made: list[tuple[str, list[str]]], scenario: str | None = None) -> None:
    pod, ctrs = random.choice(made)
    ctx.rec.call(side, "ListPodSandbox", cri.ListPodSandboxRequest(), scenario=scenario)
    ctx.rec.call(side, "ListContainers", cri.ListContainersRequest(), scenario=scenario)
    ctx.rec.call(side, "PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=pod), scenario=scenario)
    if ctrs:
        ctx.rec.call(side, "ContainerStatus", cri.ContainerStatusRequest(container_id=random.choice(ctrs)),
                     scenario=scenario)


def list_status(ctx: Ctx) -> None:
    """The reads (lists and statuses) with pods x containers running on each side."""
    made = ctx.populate(ctx.params.pods, ctx.params.containers)
    for i in range(ctx.params.reps):
        for side in order(i, *ctx.sides):
            _reads(ctx, side, made[side.key])
        ctx.progress("list-status", i + 1, ctx.params.reps)


def churn(ctx: Ctx) -> None:
    """``concurrency`` pods at once, each run, given one started container, stopped and removed."""
    ctx.ensure_image(ctx.params.image)

    def one(side: Side, key: str) -> None:
        pod, cfg = ctx.run_pod(side, key)
        cid = ctx.start_container(side, pod, cfg, "c")
        ctx.rec.call(side, "StopContainer", cri.StopContainerRequest(container_id=cid, timeout=0))
        ctx.rec.call(side, "RemoveContainer", cri.RemoveContainerRequest(container_id=cid))
        ctx.remove_pod(side, pod, timed=True)

    with ThreadPoolExecutor(max_workers=ctx.params.concurrency) as pool:
        for i in range(ctx.params.reps):
            for side in order(i, *ctx.sides):
                for f in [pool.submit(one, side, f"{i}-{k}") for k in range(ctx.params.concurrency)]:
                    f.result()
            ctx.progress("churn", i + 1, ctx.params.reps)


def stats(ctx: Ctx) -> None:
    """Stats polling: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats."""
    made = ctx.populate(ctx.params.pods, ctx.params.containers)
    for i in range(ctx.params.reps):
        for side in order(i, *ctx.sides):
            pod, ctrs = random.choice(made[side.key])
            if ctrs:
                ctx.rec.call(side, "ContainerStats", cri.ContainerStatsRequest(container_id=random.choice(ctrs)))
            ctx.rec.call(side, "ListContainerStats", cri.ListContainerStatsRequest())
            ctx.rec.call(side, "PodSandboxStats", cri.PodSandboxStatsRequest(pod_sandbox_id=pod), must=False)
            ctx.rec.call(side, "ListPodSandboxStats", cri.ListPodSandboxStatsRequest(), must=False)
        ctx.progress("stats", i + 1, ctx.params.reps)


def kubelet_like(ctx: Ctx) -> None:
    """A kubelet's steady-state polling on each side (both at once) while pods come and go.

    Every ``interval`` seconds each poller calls ListPodSandbox and ListContainers, Status,
    PodSandboxStatus and ContainerStatus of this run's objects, ImageFsInfo, ListContainerStats and
    ListImages; these latencies are the report. Meanwhile pods are started and removed on both sides
    (alternating) so the lists change; those calls are recorded under ``kubelet-like/churn``.
    """
    ctx.ensure_image(ctx.params.image)
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll(side: Side) -> None:
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                rec = ctx.rec.call
                pods = rec(side, "ListPodSandbox", cri.ListPodSandboxRequest())
                ctrs = rec(side, "ListContainers", cri.ListContainersRequest())
                rec(side, "Status", cri.StatusRequest(verbose=False))
                ours = {pod.id for pod in pods.items if pod.labels.get(RUN_LABEL) == ctx.rec.run_id}
                for pod_id in ours:
                    rec(side, "PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id), must=False,
                        compare=False)
                for cid in [c.id for c in ctrs.containers if c.labels.get(RUN_LABEL) == ctx.rec.run_id]:
                    rec(side, "ContainerStatus", cri.ContainerStatusRequest(container_id=cid), must=False,
                        compare=False)
                rec(side, "ImageFsInfo", cri.ImageFsInfoRequest())
                rec(side, "ListContainerStats", cri.ListContainerStatsRequest())
                rec(side, "ListImages", cri.ListImagesRequest(), compare=False)
                stop.wait(max(0.0, ctx.params.interval - (time.monotonic() - t0)))
        except BaseException as e:
            errors.append(e)

    pollers = [threading.Thread(target=poll, args=(side,), daemon=True) for side in ctx.sides]
    for t in pollers:
        t.start()
    live: dict[str, list[str]] = {"a": [], "b": []}
    deadline = time.monotonic() + ctx.params.duration
    i = 0
    try:
        while time.monotonic() < deadline and not errors:
            for side in order(i, *ctx.sides):
                pod, cfg = ctx.run_pod(side, str(i), scenario="kubelet-like/churn")
                ctx.start_container(side, pod, cfg, "c", scenario="kubelet-like/churn")
                live[side.key].append(pod)
                if len(live[side.key]) > max(1, ctx.params.pods):
                    old = live[side.key].pop(0)
                    ctx.remove_pod(side, old, timed=True, scenario="kubelet-like/churn")
            i += 1
            left = max(0.0, deadline - time.monotonic())
            ctx.progress("kubelet-like", round(ctx.params.duration - left), round(ctx.params.duration))
            stop.wait(min(left, ctx.params.interval))
    finally:
        stop.set()
        for t in pollers:
            t.join(timeout=60)
    if errors:
        raise errors[0] if isinstance(errors[0], CallFailed) else CallFailed(str(errors[0]))


SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "pod-lifecycle": pod_lifecycle,
    "container-lifecycle": container_lifecycle,
    "exec-sync": exec_sync,
    "image-pull": image_pull,
    "list-status": list_status,
    "churn": churn,
    "stats": stats,
    "kubelet-like": kubelet_like,
}
