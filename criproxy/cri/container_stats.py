"""ContainerStats, ListContainerStats and StreamContainerStats from Tasks.Metrics and Snapshots.Usage.

kubelet calls ListContainerStats every ~10 s from start-up, so this answers from day one: one
Tasks.Metrics call for all the containers asked about (cgroup v1 or v2 messages, decoded in
``translate.stats``), the writable layer's usage per container (cached a few seconds, since overlay
usage walks the upper directory), and the CPU rate from the previous sample of each container.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri, introspection_pb, snapshots_pb, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.translate import container as t
from criproxy.translate import stats

FS_TTL = 5.0
METRICS_FILTER_MAX = 50          # above this, ask for every task and pick ours (fewer filter strings)


async def _metrics(app: App, ids: list[str]) -> dict[str, tuple[int, stats.Usage | None]]:
    filters = [f"id=={i}" for i in ids] if len(ids) <= METRICS_FILTER_MAX else []
    resp = await app.ctrd.tasks.Metrics(tasks_pb.MetricsRequest(filters=filters))
    wanted = set(ids)
    return {m.id: (m.timestamp.ToNanoseconds(), stats.decode(m.data.type_url, m.data.value))
            for m in resp.metrics if m.id in wanted}


async def snapshot_root(app: App) -> str:
    root = app.snapshot_root
    if root is None:
        resp = await app.ctrd.introspection.Plugins(introspection_pb.PluginsRequest(
            filters=[f"type==io.containerd.snapshotter.v1,id=={app.config.snapshotter}"]))
        root = next((str(p.exports["root"]) for p in resp.plugins if "root" in p.exports), "")
        app.snapshot_root = root
    return root


async def fs_usage(app: App, rec: ContainerRecord, root: str) -> cri.FilesystemUsage | None:
    cache = app.container_fs
    hit = cache.get(rec.id)
    if hit is not None and time.monotonic() - hit[0] < FS_TTL:
        return hit[1]
    try:
        u = await app.ctrd.snapshots.Usage(snapshots_pb.UsageRequest(
            snapshotter=rec.handles.snapshotter or app.config.snapshotter, key=rec.id))
    except errors.CriError:
        return None
    fs = cri.FilesystemUsage(timestamp=time.time_ns(), fs_id=cri.FilesystemIdentifier(mountpoint=root))
    fs.used_bytes.value, fs.inodes_used.value = u.size, u.inodes
    cache[rec.id] = (time.monotonic(), fs)
    return fs


def _attributes(rec: ContainerRecord) -> cri.ContainerAttributes:
    cfg = rec.config
    return cri.ContainerAttributes(id=rec.id, metadata=cfg.metadata, labels=cfg.labels, annotations=cfg.annotations)


def _one(app: App, rec: ContainerRecord, sample: tuple[int, stats.Usage | None] | None,
         fs: cri.FilesystemUsage | None) -> cri.ContainerStats:
    samples = app.container_cpu
    ts, usage = sample if sample is not None else (time.time_ns(), None)
    cores = None
    if usage is not None:
        now = stats.CpuSample(ts, usage.cpu_ns)
        cores = stats.nano_cores(samples.get(rec.id), now)
        samples[rec.id] = now
    return stats.to_cri_stats(_attributes(rec), usage, ts, cores, fs)


async def collect(app: App, recs: Iterable[ContainerRecord]) -> list[cri.ContainerStats]:
    recs = list(recs)
    running = [r.id for r in recs if r.state == cri.CONTAINER_RUNNING]
    metrics = await _metrics(app, running) if running else {}
    root = await snapshot_root(app)
    layers = await asyncio.gather(*(fs_usage(app, r, root) for r in recs))
    live = {r.id for r in app.containers.values()}
    for gone in set(app.container_cpu) - live:
        del app.container_cpu[gone]
    for gone in set(app.container_fs) - live:
        del app.container_fs[gone]
    return [_one(app, r, metrics.get(r.id), fs) for r, fs in zip(recs, layers, strict=True)]


@rpc("ContainerStats")
async def container_stats(app: App, request: cri.ContainerStatsRequest) -> cri.ContainerStatsResponse:
    rec = app.containers.get(request.container_id)
    return cri.ContainerStatsResponse(stats=(await collect(app, [rec]))[0])


def _select(app: App, flt: cri.ContainerStatsFilter) -> list[ContainerRecord]:
    """The filter's containers; a pod's (the kubelet's usual filter) come from the store's sandbox
    index, so per-pod stats do not scan every container."""
    candidates: Iterable[ContainerRecord] = app.containers.values()
    if flt.pod_sandbox_id:
        try:
            sb = app.sandboxes.find(flt.pod_sandbox_id)
        except errors.InvalidArgument:       # a prefix of several pods: a filter, not an error
            sb = None
        if sb is not None:
            candidates = app.containers.for_sandbox(sb.id)
    return [r for r in candidates if t.stats_matches(r, flt)]


@rpc("ListContainerStats")
async def list_container_stats(app: App, request: cri.ListContainerStatsRequest) -> cri.ListContainerStatsResponse:
    return cri.ListContainerStatsResponse(stats=await collect(app, _select(app, request.filter)))


@rpc("StreamContainerStats")
async def stream_container_stats(app: App, request: cri.StreamContainerStatsRequest) -> AsyncIterator[
        cri.StreamContainerStatsResponse]:
    items = await collect(app, _select(app, request.filter))
    for i in range(0, max(len(items), 1), 200):
        yield cri.StreamContainerStatsResponse(container_stats=items[i:i + 200])
