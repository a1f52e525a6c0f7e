"""ListMetricDescriptors / ListPodSandboxMetrics / StreamPodSandboxMetrics through the CRI socket.

Every value is checked against the file it comes from, read by the test itself around the call: the
container's cgroup v1 files (found from its task's /proc/<pid>/cgroup), /proc/<pid>/fd, /proc/net/dev
inside the pod's netns, the container's overlay upper directory and the snapshotter filesystem's
statvfs. Counters are bounded by a read before and one after; gauges of an idle container likewise,
with a small allowance for the kernel's own page accounting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, wait_for
from tests.integration.containers.conftest import pod_config as logged_pod_config
from tests.integration.sandbox.conftest import Pods, netns_exec, ping, pod_config

CGROUP = Path("/sys/fs/cgroup")
SLACK = 512 * 1024          # bytes a gauge of an idle cgroup may move between reads
# ~8 MB of anonymous memory, a busy loop under a CPU quota (so it is throttled), a 1 MiB file in the
# writable layer, then idle until stopped.
WORKLOAD = ("x=$(head -c 8000000 /dev/zero | tr '\\0' a); i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; "
            "head -c 1048576 /dev/zero > /big; touch /tmp/ready; sleep 100000 & wait")


@pytest.fixture
def pod(pods: Pods, testenv: Environment, tmp_path: Path) -> Iterator[Pod]:
    client = pods.client
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=300)
    p = Pod(client, logged_pod_config(tmp_path, "metricspod"), testenv.busybox_image)
    yield p
    p.cleanup()


def _cgroup_dirs(pid: int) -> dict[str, Path]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        for c in controllers.split(","):
            if c in ("cpuacct", "memory", "pids", "cpu"):
                out[c] = CGROUP / controllers / rel.lstrip("/")
    return out


def _kv(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def _int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _files(pid: int) -> dict[str, int]:
    """Every figure the metrics report, straight from the files."""
    d = _cgroup_dirs(pid)
    if not {"memory", "pids", "cpu", "cpuacct"} <= set(d):
        pytest.skip("the test reads cgroup v1 files; this host has cgroup v2")
    mem, cpu = _kv(d["memory"] / "memory.stat"), _kv(d["cpu"] / "cpu.stat")
    procs = (d["pids"] / "cgroup.procs").read_text().split()
    ticks = _kv(d["cpuacct"] / "cpuacct.stat")                   # in USER_HZ ticks
    hz = os.sysconf("SC_CLK_TCK")
    memsw = d["memory"] / "memory.memsw.usage_in_bytes"            # memory plus swap, where accounted
    usage = _int(d["memory"] / "memory.usage_in_bytes")
    return {
        "container_cpu_user_seconds_total": ticks["user"] // hz,
        "container_cpu_system_seconds_total": ticks["system"] // hz,
        "container_memory_swap": max(_int(memsw) - usage, 0) if memsw.exists() else 0,
        "container_cpu_usage_seconds_total": _int(d["cpuacct"] / "cpuacct.usage") // 10**9,
        "container_cpu_cfs_periods_total": cpu["nr_periods"],
        "container_cpu_cfs_throttled_periods_total": cpu["nr_throttled"],
        "container_cpu_cfs_throttled_seconds_total": cpu["throttled_time"] // 10**9,
        "container_memory_usage_bytes": _int(d["memory"] / "memory.usage_in_bytes"),
        "container_memory_working_set_bytes": _int(d["memory"] / "memory.usage_in_bytes")
        - mem["total_inactive_file"],
        "container_memory_rss": mem["total_rss"], "container_memory_cache": mem["total_cache"],
        "container_memory_mapped_file": mem["total_mapped_file"],
        "container_memory_max_usage_bytes": _int(d["memory"] / "memory.max_usage_in_bytes"),
        "container_memory_failcnt": _int(d["memory"] / "memory.failcnt"),
        "pgfault": mem["pgfault"], "pgmajfault": mem["pgmajfault"],
        "container_threads": _int(d["pids"] / "pids.current"),
        "container_processes": len(procs),
        "container_file_descriptors": sum(len(os.listdir(f"/proc/{p}/fd")) for p in procs),
    }


COUNTERS = {"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
            "container_cpu_system_seconds_total", "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
            "container_memory_failcnt", "pgfault", "pgmajfault", "container_memory_max_usage_bytes"}
EXACT = {"container_threads", "container_processes", "container_file_descriptors"}


def _metrics_of(pod: Pod) -> cri.PodSandboxMetrics:
    resp = pod.rt.ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest())
    [mine] = [p for p in resp.pod_metrics if p.pod_sandbox_id == pod.id]
    return mine


def _by_name(ms: list[cri.Metric]) -> dict[str, cri.Metric]:
    """Metrics by name, or by name+label tail for the ones with extra labels."""
    return {m.name + "".join(f"|{v}" for v in m.label_values[3:]): m for m in ms}


def _upper_usage(pid: int) -> tuple[int, int]:
    """(bytes, inodes) of the container's overlay upper directory, counted as containerd does: each
    inode once, its allocated blocks."""
    root = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    upper = next(o.split("=", 1)[1] for o in root.split(" - ")[1].split()[2].split(",") if o.startswith("upperdir="))
    seen: set[tuple[int, int]] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in [".", *dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
    return size, len(seen)


def _netdev(netns_path: str) -> dict[str, list[int]]:
    out = netns_exec(netns_path, "cat", "/proc/net/dev").stdout
    return {name.strip(): [int(x) for x in rest.split()] for name, _, rest in
            (line.partition(":") for line in out.splitlines()[2:])}


NET = {"container_network_receive_bytes_total": 0, "container_network_receive_packets_total": 1,
       "container_network_receive_errors_total": 2, "container_network_receive_packets_dropped_total": 3,
       "container_network_transmit_bytes_total": 8, "container_network_transmit_packets_total": 9,
       "container_network_transmit_errors_total": 10, "container_network_transmit_packets_dropped_total": 11}


def test_descriptors_declare_every_label_sent(pod: Pod, pods: Pods) -> None:
    descs = pod.rt.ListMetricDescriptors(cri.ListMetricDescriptorsRequest()).descriptors
    keys = {d.name: list(d.label_keys) for d in descs}
    assert len(keys) == len(descs)
    assert all(d.help for d in descs)
    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_threads",
                 "container_processes", "container_file_descriptors", "container_fs_usage_bytes",
                 "container_network_receive_bytes_total", "container_memory_failures_total"):
        assert keys[name][:3] == ["id", "name", "image"], name
    assert keys["container_network_receive_bytes_total"] == ["id", "name", "image", "interface"]
    assert keys["container_memory_failures_total"] == ["id", "name", "image", "failure_type", "scope"]
    cid = pod.run(container_config(pod.image, name="web", command=["sleep", "100000"]))
    wait_for(lambda: pod.status(cid).state == cri.CONTAINER_RUNNING, what="running")
    mine = _metrics_of(pod)
    sent = [*mine.metrics, *(m for c in mine.container_metrics for m in c.metrics)]
    assert sent
    for m in sent:                           # the kubelet drops a sample whose values do not fit the keys
        assert m.name in keys and len(m.label_values) == len(keys[m.name]), m
    [c] = mine.container_metrics
    assert c.container_id == cid
    assert {tuple(m.label_values[:3]) for m in c.metrics} == {(cid, "web", pod.image)}
    assert {tuple(m.label_values) for m in mine.metrics} == {(pod.id, "metricspod", "", "eth0")}


def test_values_match_cgroup_proc_and_netns_files(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["sh", "-c", WORKLOAD])
    cfg.linux.resources.cpu_period, cfg.linux.resources.cpu_quota = 100000, 20000
    cid = pod.run(cfg)
    wait_for(lambda: pod.exec(cid, "test", "-e", "/tmp/ready").exit_code == 0, timeout=120, interval=0.5,
             what="workload done")
    pid = json.loads(pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True))
                     .info["info"])["pid"]
    info = json.loads(pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=True))
                      .info["info"])
    ip = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status.network.ip
    assert ping(ip)

    before, net_before = _files(pid), _netdev(info["netnsPath"])
    mine = _metrics_of(pod)
    after, net_after = _files(pid), _netdev(info["netnsPath"])
    [c] = mine.container_metrics
    got = _by_name(list(c.metrics))

    for name, low in before.items():
        high = after[name]
        key = f"container_memory_failures_total|{name}|container" if name in ("pgfault", "pgmajfault") else name
        value = got[key].value.value
        if name in EXACT:
            assert low == high == value, (name, low, value, high)
        elif name in COUNTERS:
            assert low <= value <= high, (name, low, value, high)
        else:
            assert min(low, high) - SLACK <= value <= max(low, high) + SLACK, (name, low, value, high)
    assert got["container_cpu_cfs_throttled_periods_total"].value.value > 0     # the quota bit
    assert got["container_memory_rss"].value.value >= 8_000_000
    assert got["container_processes"].value.value == 2                            # sh and sleep
    assert got["container_threads_max"].value.value == _threads_max(pid)

    used, inodes = _upper_usage(pid)
    fs = {k.split("|")[0]: m for k, m in got.items() if k.startswith("container_fs_")}
    assert fs["container_fs_usage_bytes"].value.value == used >= 1048576
    assert fs["container_fs_inodes_used"].value.value == inodes
    root = fs["container_fs_usage_bytes"].label_values[3]
    st = os.statvfs(root)
    assert fs["container_fs_limit_bytes"].value.value == st.f_blocks * st.f_frsize
    assert fs["container_fs_inodes_total"].value.value == st.f_files
    assert abs(fs["container_fs_inodes_free"].value.value - st.f_ffree) < 10_000   # others write there too
    assert {m.label_values[3] for k, m in fs.items()} == {root}

    net = {m.name: m for m in mine.metrics}
    for name, col in NET.items():
        assert net[name].label_values[3] == "eth0"
        assert net_before["eth0"][col] <= net[name].value.value <= net_after["eth0"][col], name
    assert net["container_network_receive_packets_total"].value.value > 0


def _threads_max(pid: int) -> int:
    raw = (_cgroup_dirs(pid)["pids"] / "pids.max").read_text().strip()
    return 0 if raw == "max" else int(raw)


def test_stream_lists_ready_pods_only_and_host_network_has_no_network(pods: Pods) -> None:
    a, b = pods.run(pod_config("m-a")), pods.run(pod_config("m-b"))
    host = pods.run(pod_config("m-host", host_network=True))
    rt = pods.client.runtime
    streamed = {p.pod_sandbox_id: p for r in rt.StreamPodSandboxMetrics(cri.StreamPodSandboxMetricsRequest())
                for p in r.pod_sandbox_metrics}
    assert {a, b, host} <= set(streamed)
    assert not streamed[host].metrics and not streamed[host].container_metrics
    assert {m.label_values[0] for m in streamed[a].metrics} == {a}
    pods.stop(b)
    listed = {p.pod_sandbox_id for p in rt.ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest()).pod_metrics}
    assert a in listed and b not in listed


# ---- UpdatePodSandboxResources ----------------------------------------------------------------

def _update(pods: Pods, sid: str, overhead: cri.LinuxContainerResources | None = None,
            resources: cri.LinuxContainerResources | None = None) -> None:
    pods.client.runtime.UpdatePodSandboxResources(cri.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=sid, overhead=overhead, resources=resources))


def test_update_pod_sandbox_resources_stored_reported_and_recovered(pods: Pods, criproxy: CriproxyProcess) -> None:
    sid = pods.run(pod_config("upd"))
    assert pods.info(sid)["resources"] == {} and pods.info(sid)["overhead"] == {}
    res = cri.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                      memory_limit_in_bytes=256 << 20)
    over = cri.LinuxContainerResources(cpu_shares=10, memory_limit_in_bytes=32 << 20)
    _update(pods, sid, over, res)
    want_res = {"cpuPeriod": "100000", "cpuQuota": "50000", "cpuShares": "512", "memoryLimitInBytes": str(256 << 20)}
    want_over = {"cpuShares": "10", "memoryLimitInBytes": str(32 << 20)}
    assert pods.info(sid)["resources"] == want_res and pods.info(sid)["overhead"] == want_over

    for bad in (cri.LinuxContainerResources(cpu_shares=-1), cri.LinuxContainerResources(cpu_quota=-5),
                cri.LinuxContainerResources(cpuset_cpus="0-x")):
        with pytest.raises(grpc.RpcError) as e:
            _update(pods, sid, resources=bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            _update(pods, sid, overhead=bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert pods.info(sid)["resources"] == want_res and pods.info(sid)["overhead"] == want_over   # unchanged

    for unknown in ("0" * 64, "", "nosuchpod"):
        with pytest.raises(grpc.RpcError) as e:
            _update(pods, unknown, resources=res)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, unknown

    criproxy.kill()
    criproxy.start()
    pods.client.reconnect()
    assert pods.info(sid)["resources"] == want_res and pods.info(sid)["overhead"] == want_over
    assert pods.status(sid).status.state == cri.SANDBOX_READY
    _update(pods, sid, resources=cri.LinuxContainerResources(cpu_shares=2))     # each part replaced whole
    assert pods.info(sid)["resources"] == {"cpuShares": "2"} and pods.info(sid)["overhead"] == {}
    assert pods.info(sid)["config"]["linux"]["resources"] == {"cpu_shares": "2"}
