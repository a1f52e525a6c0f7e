"""translate/metrics.py and io/procfs.py: cgroup v1 and v2 Metrics messages (plain data) to cAdvisor-named
CRI metrics, whose label values always match their descriptors; the cgroup directory of a task."""

from __future__ import annotations

from pathlib import Path

import pytest

from criproxy.io import procfs
from criproxy.protos import cgroups_v1, cgroups_v2, cri
from criproxy.translate import metrics as m
from criproxy.translate import stats

IDENT = m.Identity("c1", "web", "busybox:1")


def _v2_any() -> tuple[str, bytes]:
    msg = cgroups_v2.Metrics()
    msg.cpu.usage_usec, msg.cpu.user_usec, msg.cpu.system_usec = 7_500_000, 5_200_000, 2_300_000
    msg.cpu.nr_periods, msg.cpu.nr_throttled, msg.cpu.throttled_usec = 40, 9, 3_900_000
    mem = msg.memory
    mem.usage, mem.inactive_file, mem.anon = 50_000_000, 10_000_000, 30_000_000
    mem.file, mem.file_mapped = 15_000_000, 2_000
    mem.swap_usage, mem.pgfault, mem.pgmajfault, mem.max_usage = 4096, 1234, 5, 60_000_000
    msg.memory_events.max = 3
    msg.pids.current, msg.pids.limit = 6, 100
    return "/" + stats.V2_TYPE, msg.SerializeToString()


def _v1_any(pids_limit: int = 0) -> tuple[str, bytes]:
    msg = cgroups_v1.Metrics()
    msg.cpu.usage.total, msg.cpu.usage.user, msg.cpu.usage.kernel = 2_999_999_999, 1_000_000_000, 900_000_000
    msg.cpu.throttling.periods, msg.cpu.throttling.throttled_periods = 10, 2
    msg.cpu.throttling.throttled_time = 1_500_000_000
    mem = msg.memory
    mem.usage.usage, mem.usage.max, mem.usage.failcnt = 40_000_000, 45_000_000, 7
    mem.swap.usage = 40_100_000                     # memsw: memory plus swap
    mem.total_inactive_file, mem.total_rss, mem.total_cache, mem.total_mapped_file = 1_000_000, 20_000_000, 9_000, 77
    mem.pg_fault, mem.pg_maj_fault = 300, 4
    msg.pids.current, msg.pids.limit = 3, pids_limit
    return "types.googleapis.com/" + stats.V1_TYPE, msg.SerializeToString()


def _values(ms: list[cri.Metric]) -> dict[str, int]:
    return {x.name + "".join(f"|{v}" for v in x.label_values[3:]): x.value.value for x in ms}


def test_v2_figures() -> None:
    cg = m.decode(*_v2_any())
    assert cg is not None
    got = _values(m.container_metrics(IDENT, 1, cg, None, None))
    assert got["container_cpu_usage_seconds_total"] == 7
    assert got["container_cpu_user_seconds_total"] == 5 and got["container_cpu_system_seconds_total"] == 2
    assert got["container_cpu_cfs_periods_total"] == 40 and got["container_cpu_cfs_throttled_periods_total"] == 9
    assert got["container_cpu_cfs_throttled_seconds_total"] == 3
    assert got["container_memory_usage_bytes"] == 50_000_000
    assert got["container_memory_working_set_bytes"] == 40_000_000
    assert got["container_memory_rss"] == 30_000_000 and got["container_memory_cache"] == 15_000_000
    assert got["container_memory_mapped_file"] == 2_000 and got["container_memory_swap"] == 4096
    assert got["container_memory_max_usage_bytes"] == 60_000_000 and got["container_memory_failcnt"] == 3
    assert got["container_memory_failures_total|pgfault|container"] == 1234
    assert got["container_memory_failures_total|pgmajfault|container"] == 5
    assert got["container_threads"] == 6 and got["container_threads_max"] == 100
    assert "container_processes" not in got


def test_v1_figures_and_unlimited_pids() -> None:
    cg = m.decode(*_v1_any(pids_limit=stats.UNLIMITED + 5))
    assert cg is not None
    got = _values(m.container_metrics(IDENT, 1, cg, m.ProcessFigures(2, 9), None))
    assert got["container_cpu_usage_seconds_total"] == 2       # truncated, not rounded
    assert got["container_cpu_system_seconds_total"] == 0 and got["container_cpu_user_seconds_total"] == 1
    assert got["container_cpu_cfs_throttled_seconds_total"] == 1
    assert got["container_memory_working_set_bytes"] == 39_000_000
    assert got["container_memory_swap"] == 100_000
    assert got["container_memory_max_usage_bytes"] == 45_000_000 and got["container_memory_failcnt"] == 7
    assert got["container_threads_max"] == 0                    # unlimited
    assert got["container_processes"] == 2 and got["container_file_descriptors"] == 9


def test_v2_without_peak_has_no_max_usage_and_unknown_type_is_none() -> None:
    url, raw = _v2_any()
    msg = cgroups_v2.Metrics.FromString(raw)
    msg.memory.max_usage = 0
    cg = m.decode(url, msg.SerializeToString())
    assert cg is not None and cg.max_usage is None
    assert "container_memory_max_usage_bytes" not in _values(m.container_metrics(IDENT, 1, cg, None, None))
    assert m.decode("/io.containerd.windows.Stats", b"") is None


def test_every_metric_fits_its_descriptor() -> None:
    keys = {d.name: list(d.label_keys) for d in m.descriptors()}
    cg = m.decode(*_v1_any())
    fs = m.FsFigures("/var/lib/snap", 1, 2, 3, 4, 5)
    ifaces = stats.parse_net_dev(NET_DEV)
    sent = [*m.container_metrics(IDENT, 1, cg, m.ProcessFigures(1, 1), fs),
            *m.network_metrics(m.Identity("p1", "pod", ""), 1, ifaces)]
    assert {x.name for x in sent} == set(keys)           # every descriptor is used, none undeclared
    for x in sent:
        assert len(x.label_values) == len(keys[x.name]) and x.label_values[:3] in (
            ["c1", "web", "busybox:1"], ["p1", "pod", ""]), x
        assert x.timestamp == 1
        counter = (x.name.endswith("_total") and x.name != "container_fs_inodes_total") or x.name == \
            "container_memory_failcnt"
        assert x.metric_type == (cri.COUNTER if counter else cri.GAUGE), x.name


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0
  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0
  net1: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0
"""


def test_network_counters_per_interface_without_loopback() -> None:
    got = m.network_metrics(m.Identity("p1", "pod", ""), 9, stats.parse_net_dev(NET_DEV))
    by = {(x.name, x.label_values[3]): x.value.value for x in got}
    assert {i for _, i in by} == {"eth0", "net1"}
    assert by[("container_network_receive_bytes_total", "eth0")] == 5000
    assert by[("container_network_receive_packets_total", "eth0")] == 40
    assert by[("container_network_receive_errors_total", "eth0")] == 1
    assert by[("container_network_receive_packets_dropped_total", "eth0")] == 2
    assert by[("container_network_transmit_bytes_total", "eth0")] == 7000
    assert by[("container_network_transmit_packets_total", "eth0")] == 50
    assert by[("container_network_transmit_errors_total", "eth0")] == 3
    assert by[("container_network_transmit_packets_dropped_total", "eth0")] == 4
    assert by[("container_network_transmit_bytes_total", "net1")] == 20


def test_label_count_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        m._metric("container_memory_failures_total", IDENT, 1, 1, ("pgfault",))


def _fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    real = procfs._read

    def read(path: Path) -> str:
        return text if str(path) == "/proc/42/cgroup" else real(path)

    monkeypatch.setattr(procfs, "_read", read)


def test_cgroup_dir_v2_unified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    _fake_proc(tmp_path, monkeypatch, "0::/kubepods/pod1/abc\n")
    assert procfs.cgroup_dir(42, tmp_path) == tmp_path / "kubepods/pod1/abc"


def test_cgroup_dir_v1_pids_and_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_proc(tmp_path, monkeypatch, "12:memory:/a\n8:pids:/kubepods/x\n0::/\n")
    assert procfs.cgroup_dir(42, tmp_path) == tmp_path / "pids/kubepods/x"
    _fake_proc(tmp_path, monkeypatch, "8:pids:/../../etc\n")
    assert procfs.cgroup_dir(42, tmp_path) is None
