"""Merging plugins' ContainerAdjustments and applying them to an OCI spec (expected specs by hand)."""

from __future__ import annotations

import pytest

from criproxy._gen.nri import api_pb2 as api
from criproxy.nri import adjust


def test_apply_env_annotations_mounts_hooks_resources() -> None:
    spec = {"annotations": {"keep": "1", "drop": "2"},
            "process": {"args": ["sh"], "env": ["PATH=/bin", "A=1", "B=2"]},
            "mounts": [{"destination": "/a/b", "type": "bind", "source": "/x", "options": []},
                       {"destination": "/data", "type": "bind", "source": "/old", "options": []}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}], "resources": {"memory": {"limit": 1}}}}
    adj = api.ContainerAdjustment(
        annotations={"new": "3", "-drop": ""},
        env=[api.KeyValue(key="A", value="9"), api.KeyValue(key="-B"), api.KeyValue(key="C", value="c")],
        mounts=[api.Mount(destination="/data", type="bind", source="/new", options=["rbind", "rslave"]),
                api.Mount(destination="/z", type="tmpfs", source="tmpfs")],
        rlimits=[api.POSIXRlimit(type="RLIMIT_NOFILE", hard=100, soft=50)],
        hooks=api.Hooks(prestart=[api.Hook(path="/bin/true", args=["true"])]))
    adj.linux.namespaces.append(api.LinuxNamespace(type="-ipc"))
    adj.linux.namespaces.append(api.LinuxNamespace(type="network", path="/var/run/netns/x"))
    adj.linux.resources.memory.limit.value = 4096
    adj.linux.resources.cpu.shares.value = 512
    adj.linux.resources.cpu.cpus = "0-1"
    adj.linux.oom_score_adj.value = 500
    adj.linux.cgroups_path = "/custom"
    adjust.apply(spec, adj)
    assert spec["annotations"] == {"keep": "1", "new": "3"}
    assert spec["process"]["env"] == ["PATH=/bin", "A=9", "C=c"]
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50}]
    assert spec["process"]["oomScoreAdj"] == 500 and spec["process"]["args"] == ["sh"]
    assert [(m["destination"], m["source"]) for m in spec["mounts"]] == [("/data", "/new"), ("/z", "tmpfs"),
                                                                         ("/a/b", "/x")]
    assert spec["linux"]["rootfsPropagation"] == "rslave"
    assert spec["hooks"] == {"prestart": [{"path": "/bin/true", "args": ["true"]}]}
    assert spec["linux"]["namespaces"] == [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/x"}]
    assert spec["linux"]["resources"] == {"memory": {"limit": 4096, "swap": 4096},
                                          "cpu": {"shares": 512, "cpus": "0-1"}}
    assert spec["linux"]["cgroupsPath"] == "/custom"


def test_merge_conflicts_and_unsupported() -> None:
    a = api.ContainerAdjustment(env=[api.KeyValue(key="X", value="1")])
    b = api.ContainerAdjustment(env=[api.KeyValue(key="-X")])
    with pytest.raises(adjust.Conflict, match="env X"):
        adjust.merge([("10-a", a), ("20-b", b)])
    m1, m2 = api.ContainerAdjustment(), api.ContainerAdjustment()
    m1.linux.resources.memory.limit.value = 1
    m2.linux.resources.memory.limit.value = 2
    with pytest.raises(adjust.Conflict, match=r"memory\.limit"):
        adjust.merge([("10-a", m1), ("20-b", m2)])
    m2.linux.resources.ClearField("memory")
    m2.linux.resources.cpu.quota.value = 10
    merged = adjust.merge([("10-a", m1), ("20-b", m2), ("30-c", a)])
    assert merged.linux.resources.memory.limit.value == 1 and merged.linux.resources.cpu.quota.value == 10
    assert [kv.key for kv in merged.env] == ["X"]
    dev = api.ContainerAdjustment()
    dev.linux.devices.add(path="/dev/x")
    with pytest.raises(adjust.Conflict, match=r"linux\.devices"):
        adjust.merge([("10-a", dev)])
