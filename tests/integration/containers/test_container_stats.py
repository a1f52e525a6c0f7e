"""ContainerStats / ListContainerStats / StreamContainerStats and UpdateContainerResources."""

from __future__ import annotations

import os

import grpc
import pytest

from criproxy.protos import cri
from tests.integration.containers.conftest import Pod, container_config, wait_for


def test_stats_of_running_container(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["sh", "-c", "head -c 5000000 /dev/zero > /big; "
                                                          "while true; do :; done"])
    cid = pod.run(cfg)
    wait_for(lambda: int(pod.sh(cid, "wc -c < /big || echo 0")) == 5000000, what="file written")
    st = pod.rt.ContainerStats(cri.ContainerStatsRequest(container_id=cid)).stats
    assert st.attributes.id == cid and st.attributes.metadata.name == "c"
    assert st.cpu.usage_core_nano_seconds.value > 0 and st.memory.working_set_bytes.value > 0
    assert st.memory.usage_bytes.value >= st.memory.working_set_bytes.value
    assert st.writable_layer.used_bytes.value >= 5000000 and st.writable_layer.fs_id.mountpoint
    later = wait_for(lambda: (s := pod.rt.ContainerStats(cri.ContainerStatsRequest(container_id=cid)).stats)
                     .cpu.usage_nano_cores.value > 0 and s, timeout=10, interval=0.3, what="cpu rate")
    assert later.cpu.usage_nano_cores.value > 10_000_000        # a busy loop (the host may be busy too)


def test_list_and_stream_stats(pod: Pod) -> None:
    a = pod.run(container_config(pod.image, name="a", command=["sleep", "1000"]))
    b = pod.create(container_config(pod.image, name="b", command=["true"]))
    resp = pod.rt.ListContainerStats(cri.ListContainerStatsRequest(
        filter=cri.ContainerStatsFilter(pod_sandbox_id=pod.id)))
    by_id = {s.attributes.id: s for s in resp.stats}
    assert set(by_id) == {a, b}
    assert by_id[a].memory.working_set_bytes.value > 0 and not by_id[b].HasField("memory")
    one = pod.rt.ListContainerStats(cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(id=a)))
    assert [s.attributes.id for s in one.stats] == [a]
    streamed = {s.attributes.id for r in pod.rt.StreamContainerStats(cri.StreamContainerStatsRequest(
        filter=cri.ContainerStatsFilter(pod_sandbox_id=pod.id))) for s in r.container_stats}
    assert streamed == {a, b}
    with pytest.raises(grpc.RpcError) as e:
        pod.rt.ContainerStats(cri.ContainerStatsRequest(container_id="0" * 64))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_update_resources_running_and_created(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["sleep", "1000"])
    cfg.linux.resources.memory_limit_in_bytes = 64 << 20
    cfg.linux.resources.cpu_shares = 512
    cid = pod.run(cfg)
    pod.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
        container_id=cid, linux=cri.LinuxContainerResources(memory_limit_in_bytes=96 << 20, cpu_quota=20000,
                                                             cpu_period=100000)))
    if os.path.exists("/sys/fs/cgroup/memory"):
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")) == 96 << 20
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")) == 20000
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/cpu/cpu.shares")) == 512
    res = pod.status(cid).resources.linux
    assert (res.memory_limit_in_bytes, res.cpu_quota, res.cpu_shares) == (96 << 20, 20000, 512)

    created = pod.create(container_config(pod.image, name="later", command=["sleep", "1000"]))
    pod.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
        container_id=created, linux=cri.LinuxContainerResources(memory_limit_in_bytes=48 << 20)))
    pod.rt.StartContainer(cri.StartContainerRequest(container_id=created))
    if os.path.exists("/sys/fs/cgroup/memory"):
        assert int(pod.sh(created, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")) == 48 << 20

    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
    with pytest.raises(grpc.RpcError) as e:
        pod.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
            container_id=cid, linux=cri.LinuxContainerResources(memory_limit_in_bytes=32 << 20)))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
