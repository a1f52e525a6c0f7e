"""Runtime handlers from config and the pod CIDR from UpdateRuntimeConfig reaching CNI."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.sandbox.conftest import Pods, pod_config

CONFIG = """
[runtime_handlers.runc]
runtime_type = "io.containerd.runc.v2"

[runtime_handlers.fast]
runtime_type = "io.containerd.runc.v2"
"""


@pytest.fixture
def configured(criproxy_factory: CriproxyFactory, testenv: Environment, tmp_path: Path
               ) -> Iterator[CriproxyProcess]:
    """criproxy with an extra handler and a conflist whose bridge takes ipRanges from the pod CIDR.

    Its own bridge (the session bridge already carries the /16 gateway, and the bridge plugin refuses a
    second gateway address) and IPAM dir; the bridge is deleted afterwards.
    """
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    conf = json.loads(next(testenv.criproxy_cni_dir.glob("*.conflist")).read_text())
    bridge = conf["plugins"][0]["bridge"] = testenv.criproxy_net.bridge + "c"
    conf["plugins"][0]["capabilities"] = {"ipRanges": True}
    conf["plugins"][0]["ipam"] = {"type": "host-local", "dataDir": str(tmp_path / "ipam")}
    conf["plugins"].append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    (confdir / "10-cidr.conflist").write_text(json.dumps(conf))
    cfg = tmp_path / "criproxy.toml"
    cfg.write_text(CONFIG)
    try:
        yield criproxy_factory(extra_args=["--config", str(cfg), "--cni-conf-dir", str(confdir)],
                               namespace="criproxy-cfg")
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def _pod_cidr(testenv: Environment) -> str:
    net = ipaddress.ip_network(testenv.criproxy_net.subnet)
    return str(list(net.subnets(new_prefix=24))[77])


def test_handlers_and_pod_cidr(configured: CriproxyProcess, testenv: Environment) -> None:
    with configured.client() as client:
        pods = Pods(client)
        try:
            status = client.runtime.Status(cri.StatusRequest())
            assert {h.name for h in status.runtime_handlers} >= {"", "runc", "fast"}
            cidr = _pod_cidr(testenv)
            client.runtime.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(
                runtime_config=cri.RuntimeConfig(network_config=cri.NetworkConfig(pod_cidr=cidr))))
            sid = pods.run(pod_config("cidr"), handler="fast")
            st = pods.status(sid).status
            assert st.runtime_handler == "fast"
            assert ipaddress.ip_address(st.network.ip) in ipaddress.ip_network(cidr)
            shaped = pod_config("shaped")
            shaped.annotations["kubernetes.io/ingress-bandwidth"] = "10M"
            bid = pods.run(shaped)
            host_veth = next(i["name"] for i in pods.info(bid)["cniResult"]["interfaces"]  # type: ignore[index]
                             if i["name"].startswith("veth"))
            qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host_veth], capture_output=True, text=True).stdout
            assert "tbf" in qdisc and "rate 10Mbit" in qdisc, qdisc
            with pytest.raises(grpc.RpcError) as e:
                pods.run(pod_config("nope"), handler="nope")
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in (e.value.details() or "")
            with pytest.raises(grpc.RpcError) as e:
                client.runtime.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(
                    runtime_config=cri.RuntimeConfig(network_config=cri.NetworkConfig(pod_cidr="not-a-cidr"))))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            pods.cleanup()
        assert (configured.root / "pod-cidr").read_text().strip() == cidr
    configured.restart()                          # the CIDR is kept across a restart
    with configured.client() as client:
        pods = Pods(client)
        try:
            sid = pods.run(pod_config("cidr-again"))
            assert ipaddress.ip_address(pods.status(sid).status.network.ip) in ipaddress.ip_network(cidr)
        finally:
            pods.cleanup()
