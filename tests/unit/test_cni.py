"""Pure CNI logic: per-plugin stdin, capabilities, DEL prevResult rules, result IPs, pod inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from criproxy.network import cni, cniconf, pod
from criproxy.protos import cri

NET = cniconf.parse_dict({"cniVersion": "1.0.0", "name": "n", "plugins": [
    {"type": "bridge", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": True}},
]}, "test")


def _att(**caps: Any) -> cni.Attachment:
    return cni.Attachment(container_id="c1", netns="/run/netns/x", args=(("A", "1"), ("B", "2")), capabilities=caps)


def test_plugin_config_adds_name_version_prev_and_only_wanted_capabilities() -> None:
    att = _att(portMappings=[{"hostPort": 80}], bandwidth={"ingressRate": 1})
    first = cni.plugin_config(NET, NET.plugins[0], att, None)
    assert first["name"] == "n" and first["cniVersion"] == "1.0.0"
    assert "prevResult" not in first and "runtimeConfig" not in first
    second = cni.plugin_config(NET, NET.plugins[1], att, {"ips": []})
    assert second["prevResult"] == {"ips": []}
    assert second["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}


def test_cni_args() -> None:
    assert _att().cni_args() == "A=1;B=2"


@pytest.mark.parametrize(("version", "ok"), [("1.0.0", True), ("0.4.0", True), ("0.3.1", False), ("0.2.0", False)])
def test_prev_result_on_del(version: str, ok: bool) -> None:
    assert cni.supports_prev_result_on_del(version) is ok


def test_pod_ips_only_sandbox_eth0_ipv4_first() -> None:
    result = {"interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
              "ips": [{"interface": 2, "address": "fd00::5/64"}, {"interface": 0, "address": "10.0.0.1/24"},
                      {"interface": 2, "address": "10.88.0.5/16"}]}
    assert cni.pod_ips(result) == ["10.88.0.5", "fd00::5"]
    assert cni.pod_ips({"ip4": {"ip": "10.1.1.1/24"}}) == ["10.1.1.1"]


def test_find_plugin(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    exe = tmp_path / "a" / "bridge"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert cni.find_plugin("bridge", [tmp_path / "none", tmp_path / "a"]) == exe
    with pytest.raises(cni.CniError, match="not found"):
        cni.find_plugin("nope", [tmp_path / "a"])
    with pytest.raises(cni.CniError):
        cni.find_plugin("../bridge", [tmp_path / "a"])


@pytest.mark.parametrize(("text", "value"), [("10M", 10_000_000), ("1Gi", 2**30), ("500k", 500_000), ("7", 7),
                                             ("1e6", 1_000_000), ("25E+5", 2_500_000)])
def test_parse_quantity(text: str, value: int) -> None:
    assert pod.parse_quantity(text) == value


def test_attachment_from_pod_config() -> None:
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
                               port_mappings=[cri.PortMapping(protocol=cri.UDP, container_port=53, host_port=5353),
                                              cri.PortMapping(container_port=80)],
                               annotations={pod.INGRESS_ANNOTATION: "1M"},
                               dns_config=cri.DNSConfig(servers=["10.96.0.10"], searches=["a.svc", "svc"],
                                                        options=["ndots:5"]))
    att = pod.attachment("sid", "/run/netns/x", cfg, "10.244.1.0/24")
    assert dict(att.args)["K8S_POD_NAME"] == "p" and dict(att.args)["K8S_POD_INFRA_CONTAINER_ID"] == "sid"
    assert dict(att.args)["K8S_POD_UID"] == "u" and dict(att.args)["K8S_POD_NAMESPACE"] == "ns"
    assert att.capabilities["portMappings"] == [{"hostPort": 5353, "containerPort": 53, "protocol": "udp",
                                                 "hostIP": ""}]
    assert att.capabilities["bandwidth"] == {"ingressRate": 1_000_000, "ingressBurst": pod.MAX_BURST}
    assert att.capabilities["ipRanges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert att.capabilities["dns"] == {"servers": ["10.96.0.10"], "searches": ["a.svc", "svc"], "options": ["ndots:5"]}
    assert att.capabilities["io.kubernetes.cri.pod-annotations"] == {pod.INGRESS_ANNOTATION: "1M"}


def test_attachment_leaves_out_what_the_pod_does_not_ask_for() -> None:
    """As containerd's CRI: no portMappings without a host port, no dns without a DNS config, no
    bandwidth or ipRanges; the annotations capability is always there."""
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
                               port_mappings=[cri.PortMapping(container_port=80)])
    assert pod.attachment("sid", "/run/netns/x", cfg, "").capabilities == {"io.kubernetes.cri.pod-annotations": {}}


def test_loopback_network_is_containerds() -> None:
    assert cni.LOOPBACK.name == "cni-loopback" and cni.LOOPBACK.cni_version == "0.3.1"
    assert cni.LOOPBACK.plugins == [{"type": "loopback"}] and cni.LOOPBACK_IFNAME == "lo"
    conf = cni.plugin_config(cni.LOOPBACK, cni.LOOPBACK.plugins[0], _att(portMappings=[{"hostPort": 1}]), None)
    assert conf == {"type": "loopback", "name": "cni-loopback", "cniVersion": "0.3.1"}   # no capabilities


def test_network_state_round_trip(tmp_path: Path) -> None:
    att = _att(portMappings=[])
    st = pod.state_for("/run/netns/x", NET.raw, att)
    st.result = {"ips": []}
    pod.save(tmp_path, st)
    back = pod.load(tmp_path)
    assert back is not None and back.to_attachment() == att and back.result == {"ips": []}
    assert back.loopback is True
    assert pod.load(tmp_path / "missing") is None


def test_network_state_written_before_loopback_existed_has_none(tmp_path: Path) -> None:
    """A record from before the loopback network was attached must not get a DEL it never had."""
    doc = {"netns": "/run/netns/x", "conflist": NET.raw, "result": None, "torn_down": False,
           "attachment": {"container_id": "c1", "netns": "/run/netns/x", "ifname": "eth0", "args": [],
                          "capabilities": {}}}
    (tmp_path / pod.STATE_FILE).write_text(json.dumps(doc))
    back = pod.load(tmp_path)
    assert back is not None and back.loopback is False
