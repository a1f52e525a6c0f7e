"""Decoding cgroup v1/v2 task metrics into CRI stats."""

from __future__ import annotations

from criproxy.protos import cgroups_v1, cgroups_v2, cri
from criproxy.translate import stats


def test_v1_working_set_and_cpu() -> None:
    m = cgroups_v1.Metrics()
    m.cpu.usage.total = 5_000_000
    m.memory.usage.usage = 100 << 20
    m.memory.usage.limit = 200 << 20
    m.memory.total_inactive_file = 30 << 20
    m.memory.total_rss = 60 << 20
    u = stats.decode("io.containerd.cgroups.v1.Metrics", m.SerializeToString())
    assert u is not None and u.cpu_ns == 5_000_000 and u.working_set == 70 << 20 and u.rss == 60 << 20
    st = stats.to_cri_stats(cri.ContainerAttributes(id="x"), u, 7, 123, None)
    assert st.memory.working_set_bytes.value == 70 << 20 and st.memory.available_bytes.value == 130 << 20
    assert st.cpu.usage_nano_cores.value == 123 and st.cpu.usage_core_nano_seconds.value == 5_000_000


def test_v2_and_unlimited() -> None:
    m = cgroups_v2.Metrics()
    m.cpu.usage_usec = 2000
    m.memory.usage = 10 << 20
    m.memory.inactive_file = 12 << 20
    m.memory.usage_limit = (1 << 63) - 1
    u = stats.decode("types.googleapis.com/io.containerd.cgroups.v2.Metrics", m.SerializeToString())
    assert u is not None and u.cpu_ns == 2_000_000 and u.working_set == 0
    st = stats.to_cri_stats(cri.ContainerAttributes(id="x"), u, 7, None, None)
    assert not st.memory.HasField("available_bytes") and not st.cpu.HasField("usage_nano_cores")


def test_unknown_type_and_rates() -> None:
    assert stats.decode("io.containerd.windows.Stats", b"") is None
    assert stats.nano_cores(None, stats.CpuSample(1, 1)) is None
    assert stats.nano_cores(stats.CpuSample(0, 0), stats.CpuSample(2_000_000_000, 1_000_000_000)) == 500_000_000
