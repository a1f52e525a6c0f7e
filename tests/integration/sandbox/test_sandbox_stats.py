"""PodSandboxStats / ListPodSandboxStats / StreamPodSandboxStats through the CRI socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, wait_for
from tests.integration.containers.conftest import pod_config as logged_pod_config
from tests.integration.sandbox.conftest import Pods, netns_exec, ping, pod_config

# ~8 MB held in a shell variable (anonymous memory), a bounded busy loop, then idle until stopped.
WORKLOAD = ("x=$(head -c 8000000 /dev/zero | tr '\\0' a); i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; "
            "touch /tmp/ready; sleep 100000 & wait")


@pytest.fixture
def pod(pods: Pods, testenv: Environment, tmp_path: Path) -> Iterator[Pod]:
    """A pod (with container helpers) whose logs go to the test's tmp dir; busybox pulled."""
    client = pods.client
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=300)
    p = Pod(client, logged_pod_config(tmp_path, "statspod"), testenv.busybox_image)
    yield p
    p.cleanup()


def pod_stats(client: CriClient, sandbox_id: str) -> cri.PodSandboxStats:
    return client.runtime.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=sandbox_id)).stats


def eth0(st: cri.PodSandboxStats) -> cri.NetworkInterfaceUsage:
    assert st.linux.network.default_interface.name == "eth0"
    return st.linux.network.default_interface


def test_pod_stats_sum_tasks_network_and_containers(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", WORKLOAD]))
    wait_for(lambda: pod.exec(cid, "test", "-e", "/tmp/ready").exit_code == 0, timeout=60, interval=0.2,
             what="workload done")
    before = pod_stats(pod.client, pod.id)
    attrs = before.attributes
    assert attrs.id == pod.id and attrs.metadata.name == "statspod"
    assert attrs.labels["io.kubernetes.pod.name"] == "statspod"

    ip = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status.network.ip
    assert ping(ip)
    st = pod_stats(pod.client, pod.id)
    linux = st.linux
    [ctr] = linux.containers
    assert ctr.attributes.id == cid and ctr.memory.working_set_bytes.value > 0
    assert linux.cpu.usage_core_nano_seconds.value >= ctr.cpu.usage_core_nano_seconds.value > 0
    assert linux.memory.working_set_bytes.value >= max(ctr.memory.working_set_bytes.value, 8_000_000)
    assert linux.cpu.HasField("usage_nano_cores")          # a rate against the previous call
    assert linux.process.process_count.value >= 3           # pause, sh, sleep
    assert eth0(st).rx_bytes.value > eth0(before).rx_bytes.value
    assert eth0(st).tx_bytes.value > eth0(before).tx_bytes.value
    assert [i.name for i in linux.network.interfaces] == ["eth0"]

    # The same counters as the host sees them inside the pod's netns, read around a third call.
    info = json.loads(pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=True))
                      .info["info"])
    low = _host_eth0_rx(info["netnsPath"])
    rx = eth0(pod_stats(pod.client, pod.id)).rx_bytes.value
    assert low <= rx <= _host_eth0_rx(info["netnsPath"])


def _host_eth0_rx(netns_path: str) -> int:
    out = netns_exec(netns_path, "cat", "/proc/net/dev").stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("eth0:"))
    return int(row.split(":", 1)[1].split()[0])


def test_list_stream_filters_and_not_found(pods: Pods) -> None:
    a, b = pods.run(pod_config("stats-a")), pods.run(pod_config("stats-b"))
    rt = pods.client.runtime

    def listed(**flt: object) -> list[str]:
        resp = rt.ListPodSandboxStats(cri.ListPodSandboxStatsRequest(
            filter=cri.PodSandboxStatsFilter(**flt)))  # type: ignore[arg-type]
        return [s.attributes.id for s in resp.stats]

    assert {a, b} <= set(listed())
    assert listed(id=a) == [a] and listed(id=a[:12]) == [a]
    assert listed(label_selector={"io.kubernetes.pod.name": "stats-b"}) == [b]
    assert listed(id=a, label_selector={"io.kubernetes.pod.name": "stats-b"}) == []
    one = rt.ListPodSandboxStats(cri.ListPodSandboxStatsRequest(filter=cri.PodSandboxStatsFilter(id=b))).stats[0]
    assert one.linux.memory.working_set_bytes.value > 0 and one.linux.process.process_count.value >= 1
    assert eth0(one).name == "eth0"
    assert not one.linux.containers

    streamed = {s.attributes.id for r in rt.StreamPodSandboxStats(cri.StreamPodSandboxStatsRequest(
        filter=cri.PodSandboxStatsFilter(label_selector={"io.kubernetes.pod.name": "stats-a"})))
        for s in r.pod_sandbox_stats}
    assert streamed == {a}

    host = pods.run(pod_config("stats-host", host_network=True))
    hst = pod_stats(pods.client, host)
    assert hst.linux.process.process_count.value >= 1 and not hst.linux.HasField("network")

    pods.stop(b)
    assert b not in listed()
    stopped = pod_stats(pods.client, b)
    assert stopped.attributes.id == b and not stopped.HasField("linux")

    with pytest.raises(grpc.RpcError) as e:
        pod_stats(pods.client, "0" * 64)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
