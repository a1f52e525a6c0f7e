"""NRI against criproxy on the real containerd: a test plugin (tests/harness/nri_plugin.py, on
criproxy's own ttrpc and mux) connects to the NRI socket of a criproxy started with --nri-enable,
is configured and synchronized with the pods and containers that exist, and its UpdateContainers
request changes a running container's memory limit in its cgroup."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from criproxy._gen.nri import api_pb2 as api
from criproxy.nri import ttrpc
from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.nri_plugin import RUNTIME, PluginPeer

from .conftest import Pod, pod_config, wait_for

CGROUP_V1 = os.path.exists("/sys/fs/cgroup/memory")       # a v1 host: the memory controller has its own dir


@pytest.fixture
def nri_proc(criproxy_factory: CriproxyFactory, testenv: Environment) -> CriproxyProcess:
    sock_dir = testenv.scratch_dir("nri")
    return criproxy_factory(extra_args=["--nri-enable", "--nri-socket", str(sock_dir / "nri.sock"),
                                        "--nri-plugin-dir", str(sock_dir / "plugins"),   # none: not the host's
                                        "--nri-plugin-request-timeout", "10"])


def _nri_socket(proc: CriproxyProcess) -> Path:
    return Path(proc.argv[proc.argv.index("--nri-socket") + 1])


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_plugin_is_configured_synchronized_and_updates_a_container(
        nri_proc: CriproxyProcess, testenv: Environment, busybox: str) -> None:
    sock = _nri_socket(nri_proc)
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    client = nri_proc.client()
    pod: Pod = await _in_thread(Pod, client, pod_config(testenv.scratch_dir("logs"), "nri-sync"), busybox)
    try:
        cid = await _in_thread(lambda: pod.run(command=["sleep", "3600"]))
        plugin = PluginPeer(name="sync-test", index="42")
        await plugin.connect(sock)
        await asyncio.wait_for(plugin.synchronized.wait(), 30)
        assert plugin.methods() == ["Configure", "Synchronize"]
        conf = plugin.calls[0][1]
        assert isinstance(conf, api.ConfigureRequest) and conf.runtime_name == "criproxy"
        sync = plugin.calls[1][1]
        assert isinstance(sync, api.SynchronizeRequest) and not sync.more
        pods = {p.id: p for p in sync.pods}
        assert pod.id in pods
        p = pods[pod.id]
        assert (p.name, p.namespace, p.uid) == ("nri-sync", "default", pod.cfg.metadata.uid)
        assert p.pid > 0 and p.labels["io.kubernetes.pod.name"] == "nri-sync"
        ctrs = {c.id: c for c in sync.containers}
        assert cid in ctrs
        c = ctrs[cid]
        assert (c.pod_sandbox_id, c.name, c.state) == (pod.id, "c", api.CONTAINER_RUNNING) and c.pid > 0

        # The plugin asks, unsolicited, for a 48 MiB memory limit; a missing container comes back failed.
        update = api.ContainerUpdate(container_id=cid)
        update.linux.resources.memory.limit.value = 48 << 20
        missing = api.ContainerUpdate(container_id="0" * 64)
        missing.linux.resources.memory.limit.value = 48 << 20
        assert plugin.client is not None
        reply = await plugin.client.call(RUNTIME, "UpdateContainers",
                                         api.UpdateContainersRequest(update=[update, missing]),
                                         api.UpdateContainersResponse, timeout=30)
        assert [f.container_id for f in reply.failed] == ["0" * 64]
        memory_max = await _in_thread(pod.sh, cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes" if CGROUP_V1
                                      else "cat /sys/fs/cgroup/memory.max")
        assert int(memory_max) == 48 << 20
        status = await _in_thread(pod.status, cid)
        assert status.resources.linux.memory_limit_in_bytes == 48 << 20
        await plugin.close()
        # The plugin's hang-up leaves criproxy serving.
        wait_for(lambda: nri_proc.alive(), what="criproxy alive")
        assert (await _in_thread(pod.status, cid)).state == cri.CONTAINER_RUNNING
    finally:
        await _in_thread(pod.cleanup)
        client.close()



async def test_create_container_adjustment_and_refusal(nri_proc: CriproxyProcess, testenv: Environment,
                                                      busybox: str) -> None:
    """A plugin's adjustment (an env var, an annotation, a memory limit) is visible inside the
    container and in its cgroup; a refusal fails CreateContainer, leaves nothing listed, and a retry
    succeeds once the plugin agrees."""
    sock = _nri_socket(nri_proc)
    client = nri_proc.client()
    plugin = PluginPeer(name="adjuster", index="50")
    refuse = True

    async def create(req: Message) -> Message:
        assert isinstance(req, api.CreateContainerRequest)
        if refuse:
            raise ttrpc.TtrpcError(ttrpc.FAILED_PRECONDITION, "not yet")
        adj = api.ContainerAdjustment(annotations={"nri.test/adjusted": "yes"},
                                      env=[api.KeyValue(key="NRI_ADJUSTED", value="by-plugin")])
        adj.linux.resources.memory.limit.value = 40 << 20
        return api.CreateContainerResponse(adjust=adj)

    plugin.answers["CreateContainer"] = create
    await plugin.connect(sock)
    await asyncio.wait_for(plugin.synchronized.wait(), 30)
    pod: Pod = await _in_thread(Pod, client, pod_config(testenv.scratch_dir("logs"), "nri-adjust"), busybox)
    try:
        with pytest.raises(grpc.RpcError) as err:
            await _in_thread(lambda: pod.create(command=["sleep", "3600"]))
        assert "not yet" in (err.value.details() or "")
        listed = await _in_thread(client.runtime.ListContainers, cri.ListContainersRequest())
        assert [c.id for c in listed.containers if c.pod_sandbox_id == pod.id] == []
        refuse = False
        cid = await _in_thread(lambda: pod.run(command=["sleep", "3600"]))
        seen = [r for m, r in plugin.calls if m == "CreateContainer"]
        assert len(seen) == 2 and all(isinstance(r, api.CreateContainerRequest) for r in seen)
        req = seen[-1]
        assert isinstance(req, api.CreateContainerRequest)
        assert req.pod.id == pod.id and req.container.name == "c" and req.container.pod_sandbox_id == pod.id
        assert (await _in_thread(pod.sh, cid, "echo $NRI_ADJUSTED")).strip() == "by-plugin"
        memory_max = await _in_thread(pod.sh, cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes" if CGROUP_V1
                                      else "cat /sys/fs/cgroup/memory.max")
        assert int(memory_max) == 40 << 20
        verbose = await _in_thread(client.runtime.ContainerStatus,
                                   cri.ContainerStatusRequest(container_id=cid, verbose=True))
        spec = json.loads(verbose.info["info"])["runtimeSpec"]
        assert spec["annotations"]["nri.test/adjusted"] == "yes"
        # The events the plugin saw for the pod and this container so far, in order.
        names = [m for m, r in plugin.calls if getattr(getattr(r, "container", None), "id", cid) == cid
                 and m not in ("Configure", "Synchronize")]
        assert names == ["RunPodSandbox", "CreateContainer", "PostCreateContainer", "StartContainer",
                         "PostStartContainer"], names
    finally:
        await plugin.close()
        await _in_thread(pod.cleanup)
        client.close()


async def test_events_reach_plugins_in_lifecycle_order(nri_proc: CriproxyProcess, testenv: Environment,
                                                       busybox: str) -> None:
    """One pod and one container through their whole life: the plugin sees each event once, in
    lifecycle order, with the pod's and container's IDs; a refused RunPodSandbox leaves no pod."""
    sock = _nri_socket(nri_proc)
    client = nri_proc.client()
    plugin = PluginPeer(name="order", index="30")
    refuse_pod = True

    async def run_pod(req: Message) -> Message:
        assert isinstance(req, api.RunPodSandboxRequest)
        if refuse_pod:
            raise ttrpc.TtrpcError(ttrpc.FAILED_PRECONDITION, "pod refused")
        return api.RunPodSandboxResponse()

    plugin.answers["RunPodSandbox"] = run_pod
    await plugin.connect(sock)
    await asyncio.wait_for(plugin.synchronized.wait(), 30)
    cfg = pod_config(testenv.scratch_dir("logs"), "nri-order")
    try:
        with pytest.raises(grpc.RpcError) as err:
            await _in_thread(Pod, client, cfg, busybox)
        assert "pod refused" in (err.value.details() or "")
        pods = await _in_thread(client.runtime.ListPodSandbox, cri.ListPodSandboxRequest())
        assert [p.id for p in pods.items if p.metadata.name == "nri-order"] == []
        refused = [r.pod.id for m, r in plugin.calls
                   if m == "RunPodSandbox" and isinstance(r, api.RunPodSandboxRequest)]
        assert len(refused) == 1
        assert [m for m, r in plugin.calls if getattr(getattr(r, "pod", None), "id", "") == refused[0]] == \
            ["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"]
        refuse_pod = False
        pod: Pod = await _in_thread(Pod, client, cfg, busybox)
        cid = await _in_thread(lambda: pod.run(command=["sleep", "3600"]))
        await _in_thread(pod.cleanup)

        def about_us(req: Message) -> bool:
            p, c = getattr(req, "pod", None), getattr(req, "container", None)
            return (p is not None and p.id == pod.id) and (c is None or not c.id or c.id == cid)

        events = [m for m, r in plugin.calls if m not in ("Configure", "Synchronize") and about_us(r)]
        assert events == ["RunPodSandbox", "CreateContainer", "PostCreateContainer", "StartContainer",
                          "PostStartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox",
                          "RemovePodSandbox"], events
        start = next(r for m, r in plugin.calls if m == "PostStartContainer" and about_us(r))
        assert isinstance(start, api.PostStartContainerRequest)
        assert start.container.state == api.CONTAINER_RUNNING and start.container.pid > 0
        assert start.pod.name == "nri-order" and start.pod.namespace == "default"
    finally:
        await plugin.close()
        client.close()


async def test_plugin_connecting_during_creations_sees_each_once(nri_proc: CriproxyProcess, testenv: Environment,
                                                                 busybox: str) -> None:
    """Pods and containers are being made while a plugin connects: each one reaches the plugin
    exactly once, in its synchronization or as a RunPodSandbox/CreateContainer event."""
    sock = _nri_socket(nri_proc)
    client = nri_proc.client()
    logs = testenv.scratch_dir("logs")
    plugin = PluginPeer(name="racer", index="60")
    pods: list[Pod] = []

    def make(i: int) -> tuple[Pod, str]:
        pod = Pod(client, pod_config(logs, f"nri-race-{i}"), busybox)
        pods.append(pod)
        return pod, pod.create(command=["sleep", "3600"])

    try:
        made = asyncio.gather(*(asyncio.to_thread(make, i) for i in range(6)))
        await asyncio.sleep(0)               # the creations are under way as the plugin connects
        await plugin.connect(sock)
        results = await asyncio.wait_for(made, 120)
        await asyncio.wait_for(plugin.synchronized.wait(), 30)
        sync = next(r for m, r in plugin.calls if m == "Synchronize")
        assert isinstance(sync, api.SynchronizeRequest)
        pod_ids = [p.id for p in sync.pods] + [r.pod.id for m, r in plugin.calls
                                               if m == "RunPodSandbox" and isinstance(r, api.RunPodSandboxRequest)]
        ctr_ids = [c.id for c in sync.containers] + [r.container.id for m, r in plugin.calls
                                                     if m == "CreateContainer"
                                                     and isinstance(r, api.CreateContainerRequest)]
        for pod, cid in results:
            assert pod_ids.count(pod.id) == 1, (pod.id, pod_ids)
            assert ctr_ids.count(cid) == 1, (cid, ctr_ids)
    finally:
        await plugin.close()
        for pod in pods:
            await _in_thread(pod.cleanup)
        client.close()


async def test_update_container_changed_by_plugin(nri_proc: CriproxyProcess, testenv: Environment,
                                                  busybox: str) -> None:
    """UpdateContainerResources goes to the plugin first; the memory limit it answers for the
    container replaces the one asked for, and PostUpdateContainer follows."""
    sock = _nri_socket(nri_proc)
    client = nri_proc.client()
    plugin = PluginPeer(name="updater", index="70")

    async def update(req: Message) -> Message:
        assert isinstance(req, api.UpdateContainerRequest)
        assert req.linux_resources.memory.limit.value == 64 << 20        # what the CRI call asked
        u = api.ContainerUpdate(container_id=req.container.id)
        u.linux.resources.memory.limit.value = 56 << 20
        return api.UpdateContainerResponse(update=[u])

    plugin.answers["UpdateContainer"] = update
    await plugin.connect(sock)
    await asyncio.wait_for(plugin.synchronized.wait(), 30)
    pod: Pod = await _in_thread(Pod, client, pod_config(testenv.scratch_dir("logs"), "nri-update"), busybox)
    try:
        cid = await _in_thread(lambda: pod.run(command=["sleep", "3600"]))
        await _in_thread(client.runtime.UpdateContainerResources, cri.UpdateContainerResourcesRequest(
            container_id=cid, linux=cri.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
        memory_max = await _in_thread(pod.sh, cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes" if CGROUP_V1
                                      else "cat /sys/fs/cgroup/memory.max")
        assert int(memory_max) == 56 << 20
        assert plugin.methods()[-2:] == ["UpdateContainer", "PostUpdateContainer"]
    finally:
        await plugin.close()
        await _in_thread(pod.cleanup)
        client.close()
