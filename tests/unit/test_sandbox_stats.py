"""Pod sandbox stats: summing task metrics, process counts, /proc/net/dev parsing."""

from __future__ import annotations

from criproxy.protos import cgroups_v1, cgroups_v2, cri
from criproxy.translate import stats

NET_DEV = "\n".join([
    "Inter-|   Receive                                                |  Transmit",
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier"
    " compressed",
    "    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0",
    "  eth0:    5432      40    3    0    0     0          0         0     2048      20    1    0    0     0       0"
    "          0",
]) + "\n"


def test_decode_with_pids_v1_and_v2() -> None:
    m1 = cgroups_v1.Metrics()
    m1.pids.current, m1.cpu.usage.total = 3, 10
    got1 = stats.decode_with_pids("io.containerd.cgroups.v1.Metrics", m1.SerializeToString())
    assert got1 is not None and got1[1] == 3 and got1[0].cpu_ns == 10
    m2 = cgroups_v2.Metrics()
    m2.pids.current, m2.cpu.usage_usec = 5, 2
    got2 = stats.decode_with_pids("types.googleapis.com/io.containerd.cgroups.v2.Metrics", m2.SerializeToString())
    assert got2 is not None and got2[1] == 5 and got2[0].cpu_ns == 2000
    assert stats.decode_with_pids("windows", b"") is None


def test_sum_usage_has_no_limit() -> None:
    a = stats.Usage(cpu_ns=1, memory_usage=10, working_set=8, rss=4, page_faults=2, major_page_faults=1, limit=99)
    b = stats.Usage(cpu_ns=2, memory_usage=20, working_set=16, rss=8, page_faults=3, major_page_faults=0, limit=50)
    s = stats.sum_usage([a, b])
    assert (s.cpu_ns, s.memory_usage, s.working_set, s.rss, s.page_faults, s.major_page_faults, s.limit) == \
        (3, 30, 24, 12, 5, 1, 0)
    st = stats.to_cri_stats(cri.ContainerAttributes(), s, 1, None, None)
    assert not st.memory.HasField("available_bytes")


def test_net_dev_parsed_without_loopback() -> None:
    rows = stats.parse_net_dev(NET_DEV)
    assert [r.name for r in rows] == ["lo", "eth0"]
    net = stats.to_cri_network(rows, 42)
    assert [i.name for i in net.interfaces] == ["eth0"] and net.timestamp == 42
    d = net.default_interface
    assert (d.name, d.rx_bytes.value, d.rx_errors.value, d.tx_bytes.value, d.tx_errors.value) == \
        ("eth0", 5432, 3, 2048, 1)


def test_net_dev_without_eth0_has_no_default() -> None:
    net = stats.to_cri_network(stats.parse_net_dev(NET_DEV.replace("eth0", "net1")), 1)
    assert [i.name for i in net.interfaces] == ["net1"] and not net.HasField("default_interface")
