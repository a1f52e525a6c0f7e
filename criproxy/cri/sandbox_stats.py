"""PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats.

criproxy makes no pod-level cgroup of its own (each task has its own cgroup, nested under the pod's
``cgroup_parent`` only when the kubelet gives one), so the pod's ``cpu``, ``memory`` and ``process``
figures are a sum over the pod's tasks, from one Tasks.Metrics call: the pause task plus every RUNNING
container. Counters of containers that have exited are not in the sum (their cgroups are gone), so the
pod's CPU total can fall when a container exits; the rate (``usage_nano_cores``, from the previous
sample of the same pod) is then left out for that one sample. Memory has no ``available_bytes``: the
pod has no limit of its own. ``process`` is the sum of ``pids.current``.

``network`` is read from /proc/net/dev inside the pod's pinned network namespace (one dedicated thread
for all pods asked about, ``network/netdev.py``): every interface but ``lo``, ``eth0`` (the CNI
interface) as the default one. Host-network pods have no network figures (they would be the node's).

``containers`` are the ContainerStats of the pod's running containers, exactly as ListContainerStats
computes them (``container_stats.collect``). A NOTREADY pod (pause gone) answers its attributes only;
the list and stream RPCs show READY pods only, as there is nothing to measure in the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from criproxy.app import App
from criproxy.cri import container_stats, rpc
from criproxy.network import netdev
from criproxy.protos import cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t
from criproxy.translate import stats

STREAM_CHUNK = 200


@dataclass(frozen=True)
class _Sample:
    """One task's figures from Tasks.Metrics."""

    timestamp: int
    usage: stats.Usage
    pids: int


async def _metrics(app: App, ids: list[str]) -> dict[str, _Sample]:
    if not ids:
        return {}
    many = len(ids) > container_stats.METRICS_FILTER_MAX
    resp = await app.ctrd.tasks.Metrics(tasks_pb.MetricsRequest(filters=[] if many else [f"id=={i}" for i in ids]))
    wanted, out = set(ids), {}
    for m in resp.metrics:
        decoded = stats.decode_with_pids(m.data.type_url, m.data.value) if m.id in wanted else None
        if decoded is not None:
            out[m.id] = _Sample(m.timestamp.ToNanoseconds(), *decoded)
    return out


def _attributes(rec: SandboxRecord) -> cri.PodSandboxAttributes:
    cfg = rec.config
    return cri.PodSandboxAttributes(id=rec.id, metadata=cfg.metadata, labels=cfg.labels, annotations=cfg.annotations)


def _cpu_memory(app: App, rec: SandboxRecord, samples: list[_Sample], linux: cri.LinuxPodSandboxStats) -> None:
    """Pod CPU/memory/process = the sum over its tasks; the CPU rate against this pod's last sample."""
    if not samples:
        return
    ts = max(s.timestamp for s in samples)
    total = stats.sum_usage([s.usage for s in samples])
    prev_samples = app.sandbox_cpu
    now = stats.CpuSample(ts, total.cpu_ns)
    cores = stats.nano_cores(prev_samples.get(rec.id), now)
    prev_samples[rec.id] = now
    as_ctr = stats.to_cri_stats(cri.ContainerAttributes(), total, ts, cores, None)
    linux.cpu.CopyFrom(as_ctr.cpu)
    linux.memory.CopyFrom(as_ctr.memory)
    linux.process.timestamp = ts
    linux.process.process_count.value = sum(s.pids for s in samples)


def _one(app: App, rec: SandboxRecord, ctrs: list[ContainerRecord], metrics: dict[str, _Sample],
         cstats: dict[str, cri.ContainerStats], net_dev: str | None) -> cri.PodSandboxStats:
    out = cri.PodSandboxStats(attributes=_attributes(rec))
    if not rec.ready:
        return out
    linux = out.linux
    tasks = [metrics[i] for i in [rec.id, *(c.id for c in ctrs)] if i in metrics]
    _cpu_memory(app, rec, tasks, linux)
    if net_dev is not None:
        linux.network.CopyFrom(stats.to_cri_network(stats.parse_net_dev(net_dev), time.time_ns()))
    linux.containers.extend(cstats[c.id] for c in ctrs if c.id in cstats)
    return out


def _forget_removed(app: App) -> None:
    samples = app.sandbox_cpu
    for gone in [i for i in samples if app.sandboxes.find(i) is None]:
        del samples[gone]


async def collect(app: App, recs: list[SandboxRecord]) -> list[cri.PodSandboxStats]:
    """Stats of these pods: one Tasks.Metrics call for the pod sums, the container stats of all their
    running containers, and one namespace-reading thread, side by side."""
    ready = [r for r in recs if r.ready]
    ctrs = {r.id: [c for c in app.containers.for_sandbox(r.id) if c.state == cri.CONTAINER_RUNNING] for r in ready}
    every_ctr = [c for cs in ctrs.values() for c in cs]
    paths = [r.netns_path for r in ready if r.netns_path and not r.host_network]
    metrics, cstats_list, net = await asyncio.gather(
        _metrics(app, [r.id for r in ready] + [c.id for c in every_ctr]),
        container_stats.collect(app, every_ctr), netdev.read_net_dev(paths))
    cstats = {s.attributes.id: s for s in cstats_list}
    _forget_removed(app)
    return [_one(app, r, ctrs.get(r.id, []), metrics, cstats,
                 net.get(r.netns_path) if r.netns_path and not r.host_network else None) for r in recs]


@rpc("PodSandboxStats")
async def pod_sandbox_stats(app: App, request: cri.PodSandboxStatsRequest) -> cri.PodSandboxStatsResponse:
    rec = app.sandboxes.get(request.pod_sandbox_id)
    return cri.PodSandboxStatsResponse(stats=(await collect(app, [rec]))[0])


def _select(app: App, flt: cri.PodSandboxStatsFilter) -> list[SandboxRecord]:
    """READY pods matching the filter (ID or unique prefix, every selector label equal)."""
    as_list_filter = cri.PodSandboxFilter(id=flt.id, label_selector=flt.label_selector)
    return [r for r in app.sandboxes.all() if r.ready and t.matches(r, as_list_filter)]


@rpc("ListPodSandboxStats")
async def list_pod_sandbox_stats(app: App, request: cri.ListPodSandboxStatsRequest
                                 ) -> cri.ListPodSandboxStatsResponse:
    return cri.ListPodSandboxStatsResponse(stats=await collect(app, _select(app, request.filter)))


@rpc("StreamPodSandboxStats")
async def stream_pod_sandbox_stats(app: App, request: cri.StreamPodSandboxStatsRequest
                                   ) -> AsyncIterator[cri.StreamPodSandboxStatsResponse]:
    items = await collect(app, _select(app, request.filter))
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamPodSandboxStatsResponse(pod_sandbox_stats=items[i:i + STREAM_CHUNK])
