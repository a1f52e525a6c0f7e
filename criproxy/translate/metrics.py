"""CRI metrics (ListMetricDescriptors / ListPodSandboxMetrics) in cAdvisor's names; no I/O.

The kubelet's CRI metrics collector (``PodAndContainerStatsFromCRI``) turns each descriptor into a
Prometheus description with the descriptor's label keys, then each Metric into a sample with the
metric's label values, and drops a sample whose values do not match the keys in number. So every
metric built here carries exactly the values its descriptor declares, in that order:

- container metrics: ``id`` (container ID), ``name`` (container name), ``image`` (the image the
  container was created from), then the descriptor's own extra keys (``failure_type``/``scope`` for
  memory failures, ``device`` for filesystem figures);
- pod network metrics: ``id`` (sandbox ID), ``name`` (pod name), ``image`` (empty), ``interface``.

Values are UInt64, so seconds are whole seconds (truncated), as containerd's CRI plugin sends them.
CPU and memory come from one containerd ``Metrics`` message of the task's cgroup (v1 or v2 shape);
process, thread and descriptor counts and filesystem figures are passed in by the caller, which reads
them from /proc, the cgroup and the snapshotter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from criproxy.protos import cgroups_v1, cgroups_v2, cri
from criproxy.translate import stats

BASE_KEYS = ("id", "name", "image")
COUNTER, GAUGE = cri.COUNTER, cri.GAUGE

# name -> (help, extra label keys, type)
_CPU = {
    "container_cpu_usage_seconds_total": ("Cumulative CPU time consumed in seconds.", (), COUNTER),
    "container_cpu_user_seconds_total": ("Cumulative user CPU time consumed in seconds.", (), COUNTER),
    "container_cpu_system_seconds_total": ("Cumulative system CPU time consumed in seconds.", (), COUNTER),
    "container_cpu_cfs_periods_total": ("Number of elapsed enforcement period intervals.", (), COUNTER),
    "container_cpu_cfs_throttled_periods_total": ("Number of throttled period intervals.", (), COUNTER),
    "container_cpu_cfs_throttled_seconds_total": ("Total time duration the container has been throttled.", (),
                                                  COUNTER),
}
_MEMORY = {
    "container_memory_usage_bytes": ("Current memory usage in bytes, including all memory regardless of when it "
                                     "was accessed.", (), GAUGE),
    "container_memory_working_set_bytes": ("Current working set in bytes.", (), GAUGE),
    "container_memory_rss": ("Size of RSS in bytes.", (), GAUGE),
    "container_memory_cache": ("Number of bytes of page cache memory.", (), GAUGE),
    "container_memory_mapped_file": ("Size of memory mapped files in bytes.", (), GAUGE),
    "container_memory_swap": ("Container swap usage in bytes.", (), GAUGE),
    "container_memory_max_usage_bytes": ("Maximum memory usage recorded in bytes.", (), GAUGE),
    "container_memory_failcnt": ("Number of memory usage hits limits.", (), COUNTER),
    "container_memory_failures_total": ("Cumulative count of memory allocation failures.",
                                        ("failure_type", "scope"), COUNTER),
}
_PROCESS = {
    "container_processes": ("Number of processes running inside the container.", (), GAUGE),
    "container_threads": ("Number of threads running inside the container.", (), GAUGE),
    "container_threads_max": ("Maximum number of threads allowed inside the container, infinity if value is "
                              "zero.", (), GAUGE),
    "container_file_descriptors": ("Number of open file descriptors for the container.", (), GAUGE),
}
_FS = {
    "container_fs_usage_bytes": ("Number of bytes that are consumed by the container on this filesystem.",
                                 ("device",), GAUGE),
    "container_fs_inodes_used": ("Number of inodes that are consumed by the container on this filesystem.",
                                 ("device",), GAUGE),
    "container_fs_limit_bytes": ("Number of bytes that can be consumed by the container on this filesystem.",
                                 ("device",), GAUGE),
    "container_fs_inodes_total": ("Number of Inodes.", ("device",), GAUGE),
    "container_fs_inodes_free": ("Number of available Inodes.", ("device",), GAUGE),
}
_NET_FIELDS = (
    ("rx_bytes", "container_network_receive_bytes_total", "Cumulative count of bytes received."),
    ("rx_packets", "container_network_receive_packets_total", "Cumulative count of packets received."),
    ("rx_errors", "container_network_receive_errors_total", "Cumulative count of errors encountered while "
                                                             "receiving."),
    ("rx_dropped", "container_network_receive_packets_dropped_total", "Cumulative count of packets dropped "
                                                                       "while receiving."),
    ("tx_bytes", "container_network_transmit_bytes_total", "Cumulative count of bytes transmitted."),
    ("tx_packets", "container_network_transmit_packets_total", "Cumulative count of packets transmitted."),
    ("tx_errors", "container_network_transmit_errors_total", "Cumulative count of errors encountered while "
                                                              "transmitting."),
    ("tx_dropped", "container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped "
                                                                        "while transmitting."),
)
_NETWORK = {name: (text, ("interface",), COUNTER) for _, name, text in _NET_FIELDS}

TABLE: dict[str, tuple[str, tuple[str, ...], Any]] = {**_CPU, **_MEMORY, **_PROCESS, **_FS, **_NETWORK}


def descriptors() -> list[cri.MetricDescriptor]:
    """Every metric criproxy sends, with its full label key list."""
    return [cri.MetricDescriptor(name=n, help=h, label_keys=[*BASE_KEYS, *extra]) for n, (h, extra, _) in
            TABLE.items()]


@dataclass(frozen=True)
class Identity:
    """The base label values of one container (or of one pod, for network metrics)."""

    id: str
    name: str
    image: str

    def values(self) -> list[str]:
        return [self.id, self.name, self.image]


@dataclass(frozen=True)
class ProcessFigures:
    """From the cgroup's ``cgroup.procs`` and each process's /proc/<pid>/fd."""

    processes: int
    file_descriptors: int


@dataclass(frozen=True)
class FsFigures:
    """The writable layer's usage (Snapshots.Usage) and the snapshotter filesystem's size (statvfs)."""

    device: str
    used_bytes: int
    inodes_used: int
    limit_bytes: int
    inodes_total: int
    inodes_free: int


def _metric(name: str, ident: Identity, value: int, ts: int, extra: tuple[str, ...] = ()) -> cri.Metric:
    _, keys, typ = TABLE[name]
    if len(keys) != len(extra):
        raise ValueError(f"{name} takes labels {keys}, got {extra}")
    m = cri.Metric(name=name, timestamp=ts, metric_type=typ, label_values=[*ident.values(), *extra])
    m.value.value = max(int(value), 0)
    return m


@dataclass(frozen=True)
class CgroupFigures:
    """What the metrics need from one cgroup Metrics message, in bytes, nanoseconds and counts."""

    cpu_ns: int
    user_ns: int
    system_ns: int
    periods: int
    throttled_periods: int
    throttled_ns: int
    usage: int
    working_set: int
    rss: int
    cache: int
    mapped_file: int
    swap: int
    max_usage: int | None      # v1 only (memory.max_usage_in_bytes)
    failcnt: int               # v1 memory.failcnt; v2 memory.events "max"
    pgfault: int
    pgmajfault: int
    threads: int               # pids.current: the pids controller counts tasks (threads)
    threads_max: int           # pids.max; 0 for unlimited


def _v1(m: Any) -> CgroupFigures:
    cpu, mem = m.cpu, m.memory
    swap = max(mem.swap.usage - mem.usage.usage, 0) if mem.swap.usage else 0   # memsw counts memory too
    return CgroupFigures(
        cpu_ns=cpu.usage.total, user_ns=cpu.usage.user, system_ns=cpu.usage.kernel,
        periods=cpu.throttling.periods, throttled_periods=cpu.throttling.throttled_periods,
        throttled_ns=cpu.throttling.throttled_time, usage=mem.usage.usage,
        working_set=max(mem.usage.usage - mem.total_inactive_file, 0), rss=mem.total_rss, cache=mem.total_cache,
        mapped_file=mem.total_mapped_file, swap=swap, max_usage=mem.usage.max, failcnt=mem.usage.failcnt,
        pgfault=mem.pg_fault, pgmajfault=mem.pg_maj_fault, threads=m.pids.current,
        threads_max=_limit(m.pids.limit))


def _v2(m: Any) -> CgroupFigures:
    cpu, mem = m.cpu, m.memory
    return CgroupFigures(
        cpu_ns=cpu.usage_usec * 1000, user_ns=cpu.user_usec * 1000, system_ns=cpu.system_usec * 1000,
        periods=cpu.nr_periods, throttled_periods=cpu.nr_throttled, throttled_ns=cpu.throttled_usec * 1000,
        usage=mem.usage, working_set=max(mem.usage - mem.inactive_file, 0), rss=mem.anon, cache=mem.file,
        mapped_file=mem.file_mapped, swap=mem.swap_usage, max_usage=mem.max_usage or None,
        failcnt=m.memory_events.max, pgfault=mem.pgfault, pgmajfault=mem.pgmajfault, threads=m.pids.current,
        threads_max=_limit(m.pids.limit))


def _limit(v: int) -> int:
    return 0 if v >= stats.UNLIMITED else v


def decode(type_url: str, value: bytes) -> CgroupFigures | None:
    """Figures from a containerd Metrics Any; None for a shape we do not know (e.g. Windows)."""
    name = type_url.rsplit("/", 1)[-1]
    if name == stats.V1_TYPE:
        return _v1(cgroups_v1.Metrics.FromString(value))
    if name == stats.V2_TYPE:
        return _v2(cgroups_v2.Metrics.FromString(value))
    return None


def container_metrics(ident: Identity, ts: int, cg: CgroupFigures | None, procs: ProcessFigures | None,
                      fs: FsFigures | None) -> list[cri.Metric]:
    """One container's metrics from the parts that could be read (a missing part adds nothing)."""
    return list(_container(ident, ts, cg, procs, fs))


def _container(ident: Identity, ts: int, cg: CgroupFigures | None, procs: ProcessFigures | None,
               fs: FsFigures | None) -> Iterator[cri.Metric]:
    if cg is not None:
        yield _metric("container_cpu_usage_seconds_total", ident, cg.cpu_ns // 1_000_000_000, ts)
        yield _metric("container_cpu_user_seconds_total", ident, cg.user_ns // 1_000_000_000, ts)
        yield _metric("container_cpu_system_seconds_total", ident, cg.system_ns // 1_000_000_000, ts)
        yield _metric("container_cpu_cfs_periods_total", ident, cg.periods, ts)
        yield _metric("container_cpu_cfs_throttled_periods_total", ident, cg.throttled_periods, ts)
        yield _metric("container_cpu_cfs_throttled_seconds_total", ident, cg.throttled_ns // 1_000_000_000, ts)
        yield _metric("container_memory_usage_bytes", ident, cg.usage, ts)
        yield _metric("container_memory_working_set_bytes", ident, cg.working_set, ts)
        yield _metric("container_memory_rss", ident, cg.rss, ts)
        yield _metric("container_memory_cache", ident, cg.cache, ts)
        yield _metric("container_memory_mapped_file", ident, cg.mapped_file, ts)
        yield _metric("container_memory_swap", ident, cg.swap, ts)
        if cg.max_usage is not None:
            yield _metric("container_memory_max_usage_bytes", ident, cg.max_usage, ts)
        yield _metric("container_memory_failcnt", ident, cg.failcnt, ts)
        for kind, value in (("pgfault", cg.pgfault), ("pgmajfault", cg.pgmajfault)):
            yield _metric("container_memory_failures_total", ident, value, ts, (kind, "container"))
        yield _metric("container_threads", ident, cg.threads, ts)
        yield _metric("container_threads_max", ident, cg.threads_max, ts)
    if procs is not None:
        yield _metric("container_processes", ident, procs.processes, ts)
        yield _metric("container_file_descriptors", ident, procs.file_descriptors, ts)
    if fs is not None:
        dev = (fs.device,)
        yield _metric("container_fs_usage_bytes", ident, fs.used_bytes, ts, dev)
        yield _metric("container_fs_inodes_used", ident, fs.inodes_used, ts, dev)
        yield _metric("container_fs_limit_bytes", ident, fs.limit_bytes, ts, dev)
        yield _metric("container_fs_inodes_total", ident, fs.inodes_total, ts, dev)
        yield _metric("container_fs_inodes_free", ident, fs.inodes_free, ts, dev)


def network_metrics(ident: Identity, ts: int, ifaces: list[stats.InterfaceCounters]) -> list[cri.Metric]:
    """Eight counters per interface of the pod's network namespace, loopback left out."""
    return [_metric(name, ident, getattr(c, attr), ts, (c.name,))
            for c in ifaces if c.name != "lo" for attr, name, _ in _NET_FIELDS]
