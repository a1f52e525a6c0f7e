"""containerd task metrics (cgroup v1 or v2 ``Metrics`` messages) as CRI container stats; no I/O.

Working set = usage minus inactive file pages, as cAdvisor and the CRI plugin compute it (the number
kubelet evicts on). ``usage_nano_cores`` is a rate, so it needs the previous sample of the same
container: callers keep one ``CpuSample`` per container and pass it back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from criproxy.protos import cgroups_v1, cgroups_v2, cri

V1_TYPE = "io.containerd.cgroups.v1.Metrics"
V2_TYPE = "io.containerd.cgroups.v2.Metrics"
UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Usage:
    cpu_ns: int
    memory_usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int


@dataclass(frozen=True)
class CpuSample:
    timestamp: int   # ns
    cpu_ns: int


def _v1(m: Any) -> Usage:
    mem = m.memory
    usage = mem.usage.usage
    return Usage(cpu_ns=m.cpu.usage.total, memory_usage=usage,
                 working_set=max(usage - mem.total_inactive_file, 0), rss=mem.total_rss,
                 page_faults=mem.total_pg_fault, major_page_faults=mem.total_pg_maj_fault, limit=mem.usage.limit)


def _v2(m: Any) -> Usage:
    mem = m.memory
    return Usage(cpu_ns=m.cpu.usage_usec * 1000, memory_usage=mem.usage,
                 working_set=max(mem.usage - mem.inactive_file, 0), rss=mem.anon, page_faults=mem.pgfault,
                 major_page_faults=mem.pgmajfault, limit=mem.usage_limit)


def decode(type_url: str, value: bytes) -> Usage | None:
    """Usage from a Metrics Any; None for a type we do not know (e.g. a Windows runtime)."""
    name = type_url.rsplit("/", 1)[-1]
    if name == V1_TYPE:
        return _v1(cgroups_v1.Metrics.FromString(value))
    if name == V2_TYPE:
        return _v2(cgroups_v2.Metrics.FromString(value))
    return None


def nano_cores(prev: CpuSample | None, now: CpuSample) -> int | None:
    if prev is None or now.timestamp <= prev.timestamp or now.cpu_ns < prev.cpu_ns:
        return None
    return (now.cpu_ns - prev.cpu_ns) * 1_000_000_000 // (now.timestamp - prev.timestamp)


def to_cri_stats(attrs: cri.ContainerAttributes, usage: Usage | None, ts: int, cores: int | None,
                 fs: cri.FilesystemUsage | None) -> cri.ContainerStats:
    st = cri.ContainerStats(attributes=attrs)
    if fs is not None:
        st.writable_layer.CopyFrom(fs)
    if usage is None:
        return st
    st.cpu.timestamp = ts
    st.cpu.usage_core_nano_seconds.value = usage.cpu_ns
    if cores is not None:
        st.cpu.usage_nano_cores.value = cores
    mem = st.memory
    mem.timestamp = ts
    mem.working_set_bytes.value = usage.working_set
    mem.usage_bytes.value = usage.memory_usage
    mem.rss_bytes.value = usage.rss
    mem.page_faults.value = usage.page_faults
    mem.major_page_faults.value = usage.major_page_faults
    if 0 < usage.limit < UNLIMITED:
        mem.available_bytes.value = max(usage.limit - usage.working_set, 0)
    return st


# -- pod sandboxes -----------------------------------------------------------------------------

def decode_with_pids(type_url: str, value: bytes) -> tuple[Usage, int] | None:
    """Usage and the cgroup's process count (``pids.current``) from one parse of a Metrics Any."""
    name = type_url.rsplit("/", 1)[-1]
    if name == V1_TYPE:
        m1 = cgroups_v1.Metrics.FromString(value)
        return _v1(m1), m1.pids.current
    if name == V2_TYPE:
        m2 = cgroups_v2.Metrics.FromString(value)
        return _v2(m2), m2.pids.current
    return None


def sum_usage(usages: list[Usage]) -> Usage:
    """Counters added up over several cgroups (a pod's tasks); no limit, as the pod has none of its own."""
    return Usage(cpu_ns=sum(u.cpu_ns for u in usages), memory_usage=sum(u.memory_usage for u in usages),
                 working_set=sum(u.working_set for u in usages), rss=sum(u.rss for u in usages),
                 page_faults=sum(u.page_faults for u in usages),
                 major_page_faults=sum(u.major_page_faults for u in usages), limit=0)


@dataclass(frozen=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int
    rx_packets: int = 0
    rx_dropped: int = 0
    tx_packets: int = 0
    tx_dropped: int = 0


def parse_net_dev(text: str) -> list[InterfaceCounters]:
    """Rows of /proc/net/dev (two header lines, then ``name: 8 receive and 8 transmit counters``)."""
    out = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 16:
            continue
        out.append(InterfaceCounters(name=name.strip(), rx_bytes=int(fields[0]), rx_errors=int(fields[2]),
                                     tx_bytes=int(fields[8]), tx_errors=int(fields[10]),
                                     rx_packets=int(fields[1]), rx_dropped=int(fields[3]),
                                     tx_packets=int(fields[9]), tx_dropped=int(fields[11])))
    return out


def to_cri_network(ifaces: list[InterfaceCounters], ts: int, default: str = "eth0") -> cri.NetworkUsage:
    """Every interface but loopback; ``default_interface`` is the one CNI configured (eth0)."""
    net = cri.NetworkUsage(timestamp=ts)
    for c in ifaces:
        if c.name == "lo":
            continue
        item = cri.NetworkInterfaceUsage(name=c.name)
        item.rx_bytes.value, item.rx_errors.value = c.rx_bytes, c.rx_errors
        item.tx_bytes.value, item.tx_errors.value = c.tx_bytes, c.tx_errors
        net.interfaces.append(item)
        if c.name == default:
            net.default_interface.CopyFrom(item)
    return net
