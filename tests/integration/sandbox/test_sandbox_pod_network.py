"""The pod network a kubelet expects, on the user-shaped conflist (bridge + host-local + portmap, no
``loopback``): ``lo`` up in every pod, containers of one pod talking over 127.0.0.1, the CNI
capabilities containerd's CRI passes, no IP reported once the pod is stopped. Where it proves parity
the same check runs against containerd's built-in CRI (``builtin``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import free_port
from tests.integration.containers.conftest import Pod, pod_config, wait_for

IFF_UP = 0x1
# Listens on the pod's 127.0.0.1 only: another container reaches it only if lo is up.
LOCAL_HTTPD = ["sh", "-c", "mkdir -p /www && echo local-hello > /www/index.html && "
                           "exec httpd -f -p 127.0.0.1:8080 -h /www"]

# Records each call (command, interface, stdin) as one JSON line, then runs the real plugin.
RECORDER = """#!/bin/sh
in=$(cat)
printf '{"command":"%s","ifname":"%s","conf":%s}\\n' "$CNI_COMMAND" "$CNI_IFNAME" "$in" >> @LOG@
printf '%s' "$in" | exec @REAL@
"""


@pytest.fixture(params=["criproxy", "builtin"])
def make_pod(request: pytest.FixtureRequest, testenv: Environment) -> Iterator[Callable[..., Pod]]:
    """Pods on criproxy, then the same on containerd's built-in CRI (the reference)."""
    client: CriClient = request.getfixturevalue("cri" if request.param == "criproxy" else "builtin_cri")
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=300)
    logs = testenv.scratch_dir("logs")
    made: list[Pod] = []

    def make(name: str = "pod", **kw: Any) -> Pod:
        made.append(Pod(client, pod_config(logs, name, **kw), testenv.busybox_image))
        return made[-1]
    yield make
    for pod in reversed(made):
        pod.cleanup()


def _fetch_local(pod: Pod, cid: str) -> str:
    resp = pod.exec(cid, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")
    return resp.stdout.decode() if resp.exit_code == 0 else ""


def test_lo_up_and_two_containers_talk_over_localhost(make_pod: Callable[..., Pod]) -> None:
    pod = make_pod("localhost")
    pod.run(name="server", command=LOCAL_HTTPD)
    client = pod.run(name="client", command=["sleep", "3600"])
    flags = int(pod.sh(client, "cat /sys/class/net/lo/flags").strip(), 16)
    assert flags & IFF_UP, f"lo is down in the pod (flags {flags:#x})"
    assert "inet 127.0.0.1/8" in pod.sh(client, "ip addr show dev lo")
    assert wait_for(lambda: _fetch_local(pod, client), what="the server over 127.0.0.1") == "local-hello\n"


def test_ip_not_reported_once_stopped(make_pod: Callable[..., Pod], testenv: Environment) -> None:
    pod = make_pod("stopped-ip")
    st = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status
    assert testenv.criproxy_net.contains(st.network.ip) or testenv.containerd_net.contains(st.network.ip)
    pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
    st = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status
    assert st.state == cri.SANDBOX_NOTREADY
    assert st.network.ip == "" and list(st.network.additional_ips) == []


# -- criproxy only: what the plugins receive, and a conflist that lists loopback itself ----------------


def _own_conf(tmp_path: Path, testenv: Environment, edit: Callable[[dict[str, Any]], None],
              wrap: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A conf dir with the session's conflist after ``edit``, and a bin dir whose ``wrap`` plugins
    record their calls in ``<tmp>/<plugin>.log`` before running the real ones."""
    bindir, confdir = tmp_path / "bin", tmp_path / "net.d"
    bindir.mkdir()
    confdir.mkdir()
    for name in wrap:
        script = bindir / name
        script.write_text(RECORDER.replace("@LOG@", str(tmp_path / f"{name}.log"))
                          .replace("@REAL@", f"/usr/lib/cni/{name}"))
        script.chmod(0o755)
    conf = json.loads(next(testenv.criproxy_cni_dir.glob("*.conflist")).read_text())
    edit(conf)
    (confdir / "10-own.conflist").write_text(json.dumps(conf))
    return confdir, bindir


def _start(factory: CriproxyFactory, testenv: Environment, confdir: Path, bindir: Path,
           namespace: str) -> CriproxyProcess:
    proc = factory(extra_args=["--cni-conf-dir", str(confdir), "--cni-bin-dir", str(bindir),
                               "--cni-bin-dir", "/usr/lib/cni"], namespace=namespace)
    with proc.client() as client:
        for image in (testenv.pause_image, testenv.busybox_image):
            client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=300)
    return proc


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_capabilities_and_loopback_network_reach_the_plugins(criproxy_factory: CriproxyFactory,
                                                             testenv: Environment, tmp_path: Path) -> None:
    """portmap declares every capability containerd's CRI passes; loopback runs as its own network."""
    def caps(conf: dict[str, Any]) -> None:
        conf["plugins"][-1]["capabilities"] = {"portMappings": True, "dns": True, "bandwidth": True,
                                               "io.kubernetes.cri.pod-annotations": True}
    confdir, bindir = _own_conf(tmp_path, testenv, caps, wrap=("portmap", "loopback"))
    proc = _start(criproxy_factory, testenv, confdir, bindir, "criproxy-caps")
    logs = testenv.scratch_dir("logs")
    port = free_port()
    with proc.client() as client:
        full = Pod(client, pod_config(
            logs, "caps", annotations={"a.example/x": "1"},
            dns_config=cri.DNSConfig(servers=["10.96.0.10"], searches=["ns.svc.cluster.local"], options=["ndots:5"]),
            port_mappings=[cri.PortMapping(protocol=cri.TCP, container_port=80, host_port=port),
                           cri.PortMapping(protocol=cri.TCP, container_port=81)]), testenv.busybox_image)
        full_rt = _calls(tmp_path / "portmap.log")[-1]["conf"]["runtimeConfig"]
        bare = Pod(client, pod_config(logs, "bare"), testenv.busybox_image)
        bare_rt = _calls(tmp_path / "portmap.log")[-1]["conf"].get("runtimeConfig")
        for p in (full, bare):
            p.cleanup()
    assert full_rt == {
        "portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
        "dns": {"servers": ["10.96.0.10"], "searches": ["ns.svc.cluster.local"], "options": ["ndots:5"]},
        "io.kubernetes.cri.pod-annotations": {"a.example/x": "1"}}
    # no host ports, no DNS config, no annotations: only the (empty) annotations, as containerd passes
    assert bare_rt == {"io.kubernetes.cri.pod-annotations": {}}
    portmap = [(c["command"], c["ifname"]) for c in _calls(tmp_path / "portmap.log")]
    assert portmap == [("ADD", "eth0"), ("ADD", "eth0"), ("DEL", "eth0"), ("DEL", "eth0")]
    dels = [c for c in _calls(tmp_path / "portmap.log") if c["command"] == "DEL"]
    assert dels[0]["conf"]["runtimeConfig"] == full_rt          # DEL gets what ADD got
    lo = _calls(tmp_path / "loopback.log")
    assert [(c["command"], c["ifname"], c["conf"]["name"]) for c in lo] == [
        ("ADD", "lo", "cni-loopback"), ("ADD", "lo", "cni-loopback"),
        ("DEL", "lo", "cni-loopback"), ("DEL", "lo", "cni-loopback")]
    assert all("runtimeConfig" not in c["conf"] for c in lo)


def test_conflist_listing_loopback_itself_still_works(criproxy_factory: CriproxyFactory,
                                                      testenv: Environment, tmp_path: Path) -> None:
    """A user's conflist that lists loopback (older guides did) must not break the pod, and criproxy
    must still attach its own loopback network: the conflist's plugin is not what brings lo up."""
    def add_loopback(conf: dict[str, Any]) -> None:
        conf["plugins"].insert(1, {"type": "loopback"})
    confdir, bindir = _own_conf(tmp_path, testenv, add_loopback, wrap=("loopback",))
    proc = _start(criproxy_factory, testenv, confdir, bindir, "criproxy-lo")
    with proc.client() as client:
        pod = Pod(client, pod_config(testenv.scratch_dir("logs"), "withlo"), testenv.busybox_image)
        try:
            pod.run(name="server", command=LOCAL_HTTPD)
            c = pod.run(name="client", command=["sleep", "3600"])
            assert wait_for(lambda: _fetch_local(pod, c), what="the server over 127.0.0.1") == "local-hello\n"
            pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
            st = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status
            assert st.network.ip == ""
        finally:
            pod.cleanup()
    adds = [c["conf"]["name"] for c in _calls(tmp_path / "loopback.log") if c["command"] == "ADD"]
    assert "cni-loopback" in adds, adds           # criproxy's own network ran, beside the conflist's
