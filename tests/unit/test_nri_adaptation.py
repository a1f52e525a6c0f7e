"""NRI registration, configuration and synchronization against a test plugin on a real socket; the
runtime state is plain data (the integration tests use criproxy's)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from google.protobuf.message import Message

from criproxy._gen.nri import api_pb2 as api
from criproxy.nri import adaptation, ttrpc
from tests.harness.nri_plugin import PluginPeer


class World:
    def __init__(self) -> None:
        self.pods = [api.PodSandbox(id="p1", name="pod-one", namespace="default", uid="u1")]
        self.containers = [api.Container(id="c1", pod_sandbox_id="p1", name="ctr", state=api.CONTAINER_RUNNING)]
        self.applied: list[str] = []

    def snapshot(self) -> tuple[list[api.PodSandbox], list[api.Container]]:
        return list(self.pods), list(self.containers)

    async def apply(self, updates: Sequence[api.ContainerUpdate]) -> list[api.ContainerUpdate]:
        self.applied += [u.container_id for u in updates]
        return [u for u in updates if u.container_id == "missing"]


@pytest.fixture
async def nri(tmp_path: Path) -> AsyncIterator[tuple[adaptation.Adaptation, World]]:
    world = World()
    a = adaptation.Adaptation(adaptation.Settings(socket=tmp_path / "nri" / "nri.sock", registration_timeout=1,
                                                  request_timeout=1, runtime_version="test"),
                              world.snapshot, world.apply)
    await a.start()
    yield a, world
    await a.stop()


async def _until(cond: object, what: str) -> None:
    for _ in range(200):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_socket_mode_and_handshake_order(nri: tuple[adaptation.Adaptation, World]) -> None:
    a, world = nri
    assert oct(a.settings.socket.stat().st_mode & 0o777) == "0o600"
    assert oct(a.settings.socket.parent.stat().st_mode & 0o777) == "0o700"

    async def sync(req: Message) -> Message:
        return api.SynchronizeResponse(update=[api.ContainerUpdate(container_id="c1")])

    plugin = PluginPeer(name="watch", index="20", events=(1 << 3) | (1 << 9))
    plugin.answers["Synchronize"] = sync
    await plugin.connect(a.settings.socket)
    await _until(lambda: a.plugins, "plugin admitted")
    assert plugin.methods() == ["Configure", "Synchronize"]
    conf = plugin.calls[0][1]
    assert isinstance(conf, api.ConfigureRequest)
    assert (conf.runtime_name, conf.runtime_version, conf.registration_timeout, conf.request_timeout) == \
        ("criproxy", "test", 1000, 1000)
    sync_req = plugin.calls[1][1]
    assert isinstance(sync_req, api.SynchronizeRequest)
    assert [p.id for p in sync_req.pods] == ["p1"] and [c.id for c in sync_req.containers] == ["c1"]
    assert not sync_req.more
    assert world.applied == ["c1"]
    assert str(a.plugins[0]) == "20-watch" and a.plugins[0].events == 0b1000001000
    await plugin.close()
    await _until(lambda: not a.plugins, "plugin dropped after hang-up")


async def test_events_in_index_order_and_errors(nri: tuple[adaptation.Adaptation, World]) -> None:
    a, _ = nri
    late, early = PluginPeer(name="late", index="90"), PluginPeer(name="early", index="05")

    async def refuse(req: Message) -> Message:
        raise ttrpc.TtrpcError(ttrpc.FAILED_PRECONDITION, "no")

    await late.connect(a.settings.socket)
    await _until(lambda: len(a.plugins) == 1, "late admitted")
    await early.connect(a.settings.socket)
    await _until(lambda: len(a.plugins) == 2, "early admitted")
    assert [p.name for p in a.plugins] == ["early", "late"]
    order: list[str] = []
    for p in (early, late):
        async def rec(req: Message, name: str = p.name) -> Message:
            order.append(name)
            return api.CreateContainerResponse()
        p.answers["CreateContainer"] = rec
    replies = await a.call(api.CREATE_CONTAINER, "CreateContainer", api.CreateContainerRequest(),
                           api.CreateContainerResponse)
    assert order == ["early", "late"] and len(replies) == 2
    early.answers["CreateContainer"] = refuse
    with pytest.raises(adaptation.PluginError) as err:
        await a.call(api.CREATE_CONTAINER, "CreateContainer", api.CreateContainerRequest(),
                     api.CreateContainerResponse)
    assert err.value.plugin == "05-early" and "no" in str(err.value)
    assert order == ["early", "late"]            # late was not called after early refused
    # A plugin that does not answer in time is disconnected, the event counts as handled.
    async def hang(req: Message) -> Message:
        await asyncio.sleep(30)
        return api.CreateContainerResponse()
    early.answers["CreateContainer"] = hang
    replies = await a.call(api.CREATE_CONTAINER, "CreateContainer", api.CreateContainerRequest(),
                           api.CreateContainerResponse)
    assert [p.name for p, _ in replies] == ["late"]
    await _until(lambda: [p.name for p in a.plugins] == ["late"], "early dropped")
    await early.close()
    await late.close()


async def test_registration_rules(nri: tuple[adaptation.Adaptation, World]) -> None:
    a, _ = nri
    bad = PluginPeer(name="bad name!", index="10")
    with pytest.raises(ttrpc.TtrpcError) as err:
        await bad.connect(a.settings.socket)
    assert err.value.code == ttrpc.INVALID_ARGUMENT
    await bad.close()
    silent = PluginPeer()
    await silent.connect(a.settings.socket, register=False)
    assert silent.trunk is not None
    await asyncio.wait_for(silent.trunk.closed.wait(), 10)     # dropped after the registration timeout
    assert not a.plugins and silent.methods() == []
    await silent.close()


async def test_unsolicited_update_containers(nri: tuple[adaptation.Adaptation, World]) -> None:
    a, world = nri
    plugin = PluginPeer()
    await plugin.connect(a.settings.socket)
    await _until(lambda: a.plugins, "admitted")
    assert plugin.client is not None
    reply = await plugin.client.call(adaptation.RUNTIME_SERVICE, "UpdateContainers",
                                     api.UpdateContainersRequest(update=[api.ContainerUpdate(container_id="c1"),
                                                                         api.ContainerUpdate(container_id="missing")]),
                                     api.UpdateContainersResponse, timeout=5)
    assert [f.container_id for f in reply.failed] == ["missing"]
    assert world.applied == ["c1", "missing"]
    await plugin.close()


def test_sync_chunks_and_event_mask() -> None:
    pods = [api.PodSandbox(id=f"p{i}", name="x" * 100) for i in range(10)]
    ctrs = [api.Container(id=f"c{i}", name="y" * 100) for i in range(10)]
    chunks = adaptation.sync_chunks(pods, ctrs, limit=500)
    assert [c.more for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert [p.id for c in chunks for p in c.pods] == [p.id for p in pods]
    assert [x.id for c in chunks for x in c.containers] == [x.id for x in ctrs]
    assert all(c.ByteSize() <= 500 + 8 * 5 for c in chunks) and len(chunks) > 3
    assert adaptation.event_mask(0) == 0x3FFF
    assert adaptation.event_mask(0b1000) == 0b1000
    with pytest.raises(ValueError):
        adaptation.event_mask(1 << 14)


async def test_sync_waits_for_a_creation_in_progress(nri: tuple[adaptation.Adaptation, World]) -> None:
    """A creation holds the gate from its event until the store shows it: a plugin connecting in
    between is synchronized after the store changed, so it sees the new pod once (in its sync) rather
    than never (event sent before it joined, sync taken before the pod was stored)."""
    a, world = nri
    plugin = PluginPeer(name="late", index="50")

    async def create_pod() -> None:
        async with a.gate.shared():
            await a.call(api.RUN_POD_SANDBOX, "RunPodSandbox", api.RunPodSandboxRequest(), api.RunPodSandboxResponse)
            await plugin.connect(a.settings.socket)          # the plugin registers mid-creation
            await asyncio.sleep(0.2)                         # its sync would run now without the gate
            world.pods.append(api.PodSandbox(id="p2"))

    await create_pod()
    await asyncio.wait_for(plugin.synchronized.wait(), 10)
    sync = plugin.calls[1][1]
    assert isinstance(sync, api.SynchronizeRequest)
    assert [p.id for p in sync.pods] == ["p1", "p2"] and "RunPodSandbox" not in plugin.methods()
    await plugin.close()


async def test_unimplemented_event_is_resent_as_state_change(nri: tuple[adaptation.Adaptation, World]) -> None:
    a, _ = nri
    plugin = PluginPeer(unimplemented={"StartContainer", "CreateContainer"})
    await plugin.connect(a.settings.socket)
    await _until(lambda: a.plugins, "admitted")
    req = api.StartContainerRequest(pod=api.PodSandbox(id="p1"), container=api.Container(id="c1"))
    replies = await a.call(api.START_CONTAINER, "StartContainer", req, api.StartContainerResponse)
    assert len(replies) == 1
    assert plugin.methods()[-2:] == ["StartContainer", "StateChange"]
    change = plugin.calls[-1][1]
    assert isinstance(change, api.StateChangeEvent)
    assert (change.event, change.pod.id, change.container.id) == (api.START_CONTAINER, "p1", "c1")
    # CreateContainer has a reply to apply: no StateChange stands in for it, the error stands.
    with pytest.raises(adaptation.PluginError):
        await a.call(api.CREATE_CONTAINER, "CreateContainer", api.CreateContainerRequest(),
                     api.CreateContainerResponse)
    assert plugin.methods()[-1] == "CreateContainer"
    await plugin.close()


REPO = Path(__file__).resolve().parents[2]
PLUGIN_SCRIPT = """#!{exe}
import asyncio, os, socket, sys
sys.path.insert(0, {repo!r})
from tests.harness.nri_plugin import PluginPeer

async def main():
    p = PluginPeer(name="ignored", index="99")
    await p.connect(sock=socket.socket(fileno=int(os.environ["NRI_PLUGIN_SOCKET"])))
    await p.synchronized.wait()
    env = " ".join(f"{{k}}={{os.environ[k]}}" for k in sorted(os.environ) if k.startswith("NRI_"))
    with open({out!r}, "w") as f:
        f.write(env + "\\n" + p.calls[0][1].config)
    await p.trunk.closed.wait()

asyncio.run(main())
"""


async def test_preinstalled_plugin_started_with_fd3_and_config(tmp_path: Path) -> None:
    repo = str(REPO)
    plugins, confs, out = tmp_path / "plugins", tmp_path / "conf.d", tmp_path / "seen.txt"
    plugins.mkdir()
    confs.mkdir()
    script = plugins / "07-pre"
    script.write_text(PLUGIN_SCRIPT.format(exe=sys.executable, repo=repo, out=str(out)))
    script.chmod(0o755)
    (confs / "pre.conf").write_text("hello config")
    world = World()
    a = adaptation.Adaptation(adaptation.Settings(socket=tmp_path / "nri.sock", registration_timeout=20,
                                                  request_timeout=20, plugin_dir=plugins, plugin_config_dir=confs),
                              world.snapshot, world.apply)
    await a.start()
    try:
        await _until(lambda: out.exists() and out.read_text().endswith("config"), "the plugin's report")
        env, config = out.read_text().split("\n", 1)
        assert env == "NRI_PLUGIN_IDX=07 NRI_PLUGIN_NAME=pre NRI_PLUGIN_SOCKET=3"
        assert config == "hello config"
        assert [str(p) for p in a.plugins] == ["07-pre"]      # the file's name and index, not the plugin's
        proc = a.plugins[0].process
        assert proc is not None and proc.returncode is None
    finally:
        await a.stop()
    assert proc.returncode is not None                       # killed with the runtime's stop


def test_discovery_rejects_badly_named_plugins(tmp_path: Path) -> None:
    for name in ("10-good", "bad"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    assert adaptation.discover(tmp_path, None) == []
    (tmp_path / "bad").unlink()
    (tmp_path / "README").write_text("not executable")
    assert [(n, i) for n, i, _, _ in adaptation.discover(tmp_path, None)] == [("good", "10")]
