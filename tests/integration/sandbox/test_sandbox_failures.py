"""Failures roll back everything; retries with the same metadata and attempt get the same sandbox."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.sandbox.conftest import Pods, ipam_files, pod_config

FAILING_PLUGIN = """#!/bin/sh
# ADD fails after the plugins before it have set the pod up; DEL succeeds (as a real plugin would).
if [ "$CNI_COMMAND" = "ADD" ]; then
  echo '{"cniVersion":"1.0.0","code":999,"msg":"boom from the failing plugin","details":"on purpose"}'
  exit 1
fi
exit 0
"""


def _veths(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]"))


def _leftovers(proc: CriproxyProcess, testenv: Environment) -> dict[str, object]:
    ns = proc.namespace
    return {
        "containers": testenv.ctr("containers", "ls", "-q", namespace=ns).split(),
        "tasks": testenv.ctr("tasks", "ls", "-q", namespace=ns).split(),
        "snapshots": [line.split()[0] for line in
                      testenv.ctr("snapshots", "ls", namespace=ns).splitlines()[1:] if line.strip()],
        "netns": sorted(p.name for p in proc.netns_dir.glob("cni-*")) if proc.netns_dir.exists() else [],
        "sandbox_dirs": sorted(p.name for p in (proc.root / "sandboxes").glob("*"))
        if (proc.root / "sandboxes").exists() else [],
        "shm_dirs": sorted(p.name for p in (proc.state / "sandboxes").glob("*"))
        if (proc.state / "sandboxes").exists() else [],
    }


@pytest.fixture
def failing_cni(criproxy_factory: CriproxyFactory, testenv: Environment, tmp_path: Path) -> CriproxyProcess:
    """A criproxy (own namespace) whose conflist is the session's with a failing plugin after bridge."""
    bindir, confdir = tmp_path / "bin", tmp_path / "net.d"
    bindir.mkdir()
    confdir.mkdir()
    plugin = bindir / "failing"
    plugin.write_text(FAILING_PLUGIN)
    plugin.chmod(0o755)
    conf = json.loads(next(testenv.criproxy_cni_dir.glob("*.conflist")).read_text())
    conf["plugins"].insert(1, {"type": "failing"})
    (confdir / "10-failing.conflist").write_text(json.dumps(conf))
    return criproxy_factory(extra_args=["--cni-conf-dir", str(confdir), "--cni-bin-dir", str(bindir),
                                        "--cni-bin-dir", "/usr/lib/cni"], namespace="criproxy-fail")


def test_cni_plugin_failing_half_way_leaves_nothing(failing_cni: CriproxyProcess, testenv: Environment) -> None:
    bridge = testenv.criproxy_net.bridge
    ips_before, veths_before = ipam_files(testenv.ipam_dir), _veths(bridge)
    with failing_cni.client() as client:
        pods = Pods(client)
        client.image.PullImage(client.pb.PullImageRequest(image=client.pb.ImageSpec(image=testenv.pause_image)))
        before = _leftovers(failing_cni, testenv)
        cfg = pod_config("halfway")
        with pytest.raises(grpc.RpcError) as e:
            pods.run(cfg)
        assert "boom from the failing plugin" in (e.value.details() or "")
        assert _leftovers(failing_cni, testenv) == before
        assert ipam_files(testenv.ipam_dir) == ips_before
        assert _veths(bridge) == veths_before
        assert list(client.runtime.ListPodSandbox(pods.client.pb.ListPodSandboxRequest()).items) == []
        with pytest.raises(grpc.RpcError):   # the name is free again: the retry runs (and fails) anew
            pods.run(cfg)


def test_pause_failing_releases_network(pods: Pods, testenv: Environment, criproxy: CriproxyProcess) -> None:
    c = pods.client
    c.image.PullImage(c.pb.PullImageRequest(image=c.pb.ImageSpec(image=testenv.pause_image)))
    ips_before = ipam_files(testenv.ipam_dir)
    before = _leftovers(criproxy, testenv)
    cfg = pod_config("badsysctl")
    cfg.linux.sysctls["net.criproxy.no_such_sysctl"] = "1"   # runc refuses it at task create
    with pytest.raises(grpc.RpcError):
        pods.run(cfg)
    assert ipam_files(testenv.ipam_dir) == ips_before
    assert _leftovers(criproxy, testenv) == before


def test_retry_with_same_metadata_gets_same_sandbox(pods: Pods) -> None:
    cfg = pod_config("retry", attempt=1)
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: pods.run(cfg), range(4)))
    assert len(set(ids)) == 1
    assert pods.run(cfg) == ids[0]                 # after the first finished, too
    listed = [i.id for i in pods.client.runtime.ListPodSandbox(pods.client.pb.ListPodSandboxRequest()).items
              if i.metadata.uid == cfg.metadata.uid]
    assert listed == [ids[0]]
    cfg.metadata.attempt = 2
    assert pods.run(cfg) != ids[0]                 # a new attempt is a new sandbox


FLAKY_DEL_PLUGIN = """#!/bin/sh
# Passes prevResult through on ADD; DEL fails while the marker file exists. Every call is logged.
echo "$CNI_COMMAND" >> "{log}"
if [ "$CNI_COMMAND" = "DEL" ] && [ -e "{marker}" ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"DEL refused for now"}}'
  exit 1
fi
if [ "$CNI_COMMAND" = "ADD" ]; then
  python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["prevResult"]))'
  exit 0
fi
cat > /dev/null
exit 0
"""


def test_cni_del_retried_until_it_succeeds(criproxy_factory: CriproxyFactory, testenv: Environment,
                                           tmp_path: Path) -> None:
    bindir, confdir, marker, log = tmp_path / "bin", tmp_path / "net.d", tmp_path / "refuse", tmp_path / "calls"
    bindir.mkdir()
    confdir.mkdir()
    plugin = bindir / "flakydel"
    plugin.write_text(FLAKY_DEL_PLUGIN.format(log=log, marker=marker))
    plugin.chmod(0o755)
    conf = json.loads(next(testenv.criproxy_cni_dir.glob("*.conflist")).read_text())
    conf["plugins"].insert(1, {"type": "flakydel"})
    (confdir / "10-flaky.conflist").write_text(json.dumps(conf))
    proc = criproxy_factory(extra_args=["--cni-conf-dir", str(confdir), "--cni-bin-dir", str(bindir),
                                        "--cni-bin-dir", "/usr/lib/cni"], namespace="criproxy-flaky")
    with proc.client() as client:
        pods = Pods(client)
        sid = pods.run(pod_config("flaky"))
        ip = pods.status(sid).status.network.ip
        marker.touch()
        with pytest.raises(grpc.RpcError) as e:
            pods.stop(sid)
        assert "DEL refused for now" in (e.value.details() or "")
        assert pods.status(sid).status.state == 1    # NOTREADY: pause is gone, only DEL is owed
        with pytest.raises(grpc.RpcError):
            pods.remove(sid)                          # remove cannot finish while DEL is owed
        marker.unlink()
        pods.stop(sid)
        assert ip not in ipam_files(testenv.ipam_dir)
        dels = log.read_text().split().count("DEL")
        pods.stop(sid)
        pods.remove(sid)
        assert log.read_text().split().count("DEL") == dels   # remembered: no DEL after success


def test_del_uses_the_conflist_add_used(criproxy_factory: CriproxyFactory, testenv: Environment,
                                        tmp_path: Path) -> None:
    """The conf dir emptied (or changed) after ADD: stop still runs DEL with the saved chain."""
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    conflist = confdir / "10-copy.conflist"
    conflist.write_text(next(testenv.criproxy_cni_dir.glob("*.conflist")).read_text())
    proc = criproxy_factory(extra_args=["--cni-conf-dir", str(confdir)], namespace="criproxy-confgone")
    with proc.client() as client:
        pods = Pods(client)
        sid = pods.run(pod_config("confgone"))
        ip = pods.status(sid).status.network.ip
        conflist.unlink()
        net = {c.type: c for c in client.runtime.Status(client.pb.StatusRequest()).status.conditions}
        assert net["NetworkReady"].status is False
        proc.kill()                                   # and a crash in between, for good measure
        proc.start()
        client.reconnect()
        pods.stop(sid)
        pods.remove(sid)
        assert ip not in ipam_files(testenv.ipam_dir)


def test_malformed_bandwidth_annotation_is_invalid_argument(pods: Pods, ctr: Callable[..., str]) -> None:
    """A bad kubernetes.io/ingress-bandwidth value is the pod author's error: INVALID_ARGUMENT (not
    UNKNOWN), nothing made, and the name stays free for the corrected pod."""
    before = ctr("containers", "ls", "-q")
    cfg = pod_config("bw")
    cfg.annotations["kubernetes.io/ingress-bandwidth"] = "lots"
    with pytest.raises(grpc.RpcError) as e:
        pods.run(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "ingress-bandwidth" in (e.value.details() or "")
    assert ctr("containers", "ls", "-q") == before
    del cfg.annotations["kubernetes.io/ingress-bandwidth"]
    assert pods.run(cfg)
