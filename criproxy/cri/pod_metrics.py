"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: cAdvisor-named metrics.

A kubelet with ``PodAndContainerStatsFromCRI`` asks for the descriptors once, then for every READY
pod's metrics on each scrape of /metrics/cadvisor. Names, label keys and units are in
``translate/metrics.py`` (see docs/sandboxes.md). One call gathers, side by side: one Tasks.Metrics
call for every running container of every READY pod (CPU, memory, threads from the task's cgroup),
one thread that counts each container's processes and open descriptors (``io/procfs.py``) and sizes
the snapshotter's filesystem, the writable layers' usage (Snapshots.Usage, cached a few seconds as
for ContainerStats), and one namespace-reading thread for the pods' /proc/net/dev. A part that cannot
be read (a task that exited meanwhile) leaves its metrics out rather than failing the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from criproxy import errors
from criproxy.app import App
from criproxy.cri import container_stats, rpc
from criproxy.io import procfs
from criproxy.network import netdev
from criproxy.protos import cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import metrics as m
from criproxy.translate import stats

STREAM_CHUNK = 200
log = logging.getLogger("criproxy.sandbox.metrics")


@rpc("ListMetricDescriptors")
async def list_metric_descriptors(app: App, request: cri.ListMetricDescriptorsRequest
                                  ) -> cri.ListMetricDescriptorsResponse:
    return cri.ListMetricDescriptorsResponse(descriptors=m.descriptors())


async def _cgroups(app: App, ids: list[str]) -> dict[str, m.CgroupFigures]:
    if not ids:
        return {}
    many = len(ids) > container_stats.METRICS_FILTER_MAX
    try:
        resp = await app.ctrd.tasks.Metrics(tasks_pb.MetricsRequest(
            filters=[] if many else [f"id=={i}" for i in ids]))
    except errors.CriError as e:     # e.g. a shim that died meanwhile: the other figures still go out
        log.warning("Tasks.Metrics for pod metrics: %s", e)
        return {}
    wanted, out = set(ids), {}
    for item in resp.metrics:
        fig = m.decode(item.data.type_url, item.data.value) if item.id in wanted else None
        if fig is not None:
            out[item.id] = fig
    return out


async def _layers(app: App, ctrs: list[ContainerRecord], root: str) -> dict[str, cri.FilesystemUsage]:
    got = await asyncio.gather(*(container_stats.fs_usage(app, c, root) for c in ctrs))
    return {c.id: fs for c, fs in zip(ctrs, got, strict=True) if fs is not None}


def _fs(layer: cri.FilesystemUsage | None, size: procfs.FsSize | None, root: str) -> m.FsFigures | None:
    if layer is None:
        return None
    limit, total, free = (size.limit_bytes, size.inodes_total, size.inodes_free) if size else (0, 0, 0)
    return m.FsFigures(device=root, used_bytes=layer.used_bytes.value, inodes_used=layer.inodes_used.value,
                       limit_bytes=limit, inodes_total=total, inodes_free=free)


async def collect(app: App) -> list[cri.PodSandboxMetrics]:
    pods = [r for r in app.sandboxes.all() if r.ready]
    ctrs = {p.id: [c for c in app.containers.for_sandbox(p.id) if c.running] for p in pods}
    every = [c for cs in ctrs.values() for c in cs]
    paths = [p.netns_path for p in pods if p.netns_path and not p.host_network]
    root = await container_stats.snapshot_root(app)
    cg, layers, (counts, size), net = await asyncio.gather(
        _cgroups(app, [c.id for c in every]), _layers(app, every, root),
        asyncio.to_thread(procfs.read_all, {c.id: c.status.pid for c in every}, root),
        netdev.read_net_dev(paths))
    ts = time.time_ns()
    return [_one(p, ctrs[p.id], ts, cg, layers, counts, size, root,
                 net.get(p.netns_path) if p.netns_path and not p.host_network else None) for p in pods]


def _one(pod: SandboxRecord, ctrs: list[ContainerRecord], ts: int, cg: dict[str, m.CgroupFigures],
         layers: dict[str, cri.FilesystemUsage], counts: dict[str, procfs.Counts], size: procfs.FsSize | None,
         root: str, net_dev: str | None) -> cri.PodSandboxMetrics:
    out = cri.PodSandboxMetrics(pod_sandbox_id=pod.id)
    if net_dev is not None:
        ident = m.Identity(pod.id, pod.config.metadata.name, "")
        out.metrics.extend(m.network_metrics(ident, ts, stats.parse_net_dev(net_dev)))
    for c in ctrs:
        pc = counts.get(c.id)
        procs = m.ProcessFigures(pc.processes, pc.file_descriptors) if pc else None
        # The image the container was asked with (cAdvisor's label), not the image's first tag today:
        # another name for the same image must not change a series' labels.
        ident = m.Identity(c.id, c.config.metadata.name, c.config.image.image or c.meta.image_name)
        out.container_metrics.append(cri.ContainerMetrics(
            container_id=c.id,
            metrics=m.container_metrics(ident, ts, cg.get(c.id), procs, _fs(layers.get(c.id), size, root))))
    return out


@rpc("ListPodSandboxMetrics")
async def list_pod_sandbox_metrics(app: App, request: cri.ListPodSandboxMetricsRequest
                                   ) -> cri.ListPodSandboxMetricsResponse:
    return cri.ListPodSandboxMetricsResponse(pod_metrics=await collect(app))


@rpc("StreamPodSandboxMetrics")
async def stream_pod_sandbox_metrics(app: App, request: cri.StreamPodSandboxMetricsRequest
                                     ) -> AsyncIterator[cri.StreamPodSandboxMetricsResponse]:
    items = await collect(app)
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=items[i:i + STREAM_CHUNK])
