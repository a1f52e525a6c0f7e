"""A pod's network: the CNI inputs a kubelet pod gets, and the on-disk record that makes DEL safe.

``attachment`` turns a PodSandboxConfig into what the plugins see, as containerd's CRI builds it:
CNI_ARGS with the K8S_* keys, ``portMappings`` for host ports (left out when there are none),
``bandwidth`` from the kubernetes.io bandwidth annotations, ``dns`` from the pod's DNS config,
``io.kubernetes.cri.pod-annotations`` (the pod's annotations, always) and ``ipRanges`` from
UpdateRuntimeConfig's pod CIDR. ``NetworkState`` is written to the sandbox directory before ADD
(netns path, the exact conflist, whether the loopback network is attached too) and after it (the
result), and again when DEL succeeds, so a crash anywhere still leaves enough to tear the network
down later.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from criproxy.network.cni import Attachment
from criproxy.protos import cri
from criproxy.state.files import write_atomic

IFNAME = "eth0"
STATE_FILE = "network.json"
INGRESS_ANNOTATION = "kubernetes.io/ingress-bandwidth"
EGRESS_ANNOTATION = "kubernetes.io/egress-bandwidth"
ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"
MAX_BURST = 2**32 - 1  # what containerd's CRI passes as burst (effectively unlimited)
_PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}
_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)$")


def parse_quantity(text: str) -> int:
    """A Kubernetes quantity such as ``10M``, ``1Gi`` or ``1e6`` (kubelet passes any valid one) as an
    integer; ValueError if malformed."""
    m = _QUANTITY.match(text.strip())
    if not m:
        raise ValueError(f"invalid quantity {text!r}")
    number, suffix = m.group(1), m.group(2)
    if suffix[:1] in ("e", "E") and suffix != "E":
        return int(float(number + suffix))
    return int(float(number) * _SUFFIX[suffix])


def port_mappings(config: cri.PodSandboxConfig) -> list[dict[str, Any]]:
    """The ``portMappings`` capability: only mappings with a host port (as the kubelet's CNI code)."""
    out = []
    for pm in config.port_mappings:
        if pm.host_port <= 0:
            continue
        out.append({"hostPort": pm.host_port, "containerPort": pm.container_port,
                    "protocol": _PROTOCOLS.get(pm.protocol, "tcp"), "hostIP": pm.host_ip})
    return out


def bandwidth(annotations: dict[str, str]) -> dict[str, int] | None:
    """The ``bandwidth`` capability from the pod's bandwidth annotations (bits per second)."""
    ingress, egress = annotations.get(INGRESS_ANNOTATION), annotations.get(EGRESS_ANNOTATION)
    if not ingress and not egress:
        return None
    out: dict[str, int] = {}
    if ingress:
        out.update(ingressRate=parse_quantity(ingress), ingressBurst=MAX_BURST)
    if egress:
        out.update(egressRate=parse_quantity(egress), egressBurst=MAX_BURST)
    return out


def dns(config: cri.DNSConfig) -> dict[str, list[str]]:
    """The ``dns`` capability, in the CNI conventions' shape (Go plugins read containerd's
    capitalised field names and these alike)."""
    return {"servers": list(config.servers), "searches": list(config.searches), "options": list(config.options)}


def attachment(sandbox_id: str, netns: str, config: cri.PodSandboxConfig, pod_cidr: str) -> Attachment:
    """Everything the plugins get besides their own config."""
    meta = config.metadata
    args = (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", meta.namespace), ("K8S_POD_NAME", meta.name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id), ("K8S_POD_UID", meta.uid))
    caps: dict[str, Any] = {ANNOTATIONS_CAPABILITY: dict(config.annotations)}
    ports = port_mappings(config)
    if ports:
        caps["portMappings"] = ports
    bw = bandwidth(dict(config.annotations))
    if bw:
        caps["bandwidth"] = bw
    if config.HasField("dns_config"):
        caps["dns"] = dns(config.dns_config)
    if pod_cidr:
        caps["ipRanges"] = [[{"subnet": c.strip()}] for c in pod_cidr.split(",") if c.strip()]
    return Attachment(container_id=sandbox_id, netns=netns, ifname=IFNAME, args=args, capabilities=caps)


@dataclass
class NetworkState:
    """What DEL needs, kept beside the sandbox's files."""

    netns: str
    conflist: dict[str, Any]
    attachment: dict[str, Any]
    result: dict[str, Any] | None = None
    torn_down: bool = False
    # The loopback network (cni.LOOPBACK) is attached beside the conflist and must be DEL'd with it;
    # records written before criproxy attached it lack the key and load as False.
    loopback: bool = False

    def to_attachment(self) -> Attachment:
        a = self.attachment
        return Attachment(container_id=a["container_id"], netns=a["netns"], ifname=a["ifname"],
                          args=tuple(tuple(x) for x in a["args"]),
                          capabilities=a["capabilities"])


def state_for(netns: str, conflist: dict[str, Any], att: Attachment) -> NetworkState:
    return NetworkState(netns=netns, conflist=conflist, attachment=asdict(att), loopback=True)


def save(directory: Path, st: NetworkState) -> None:
    """Write durably (fsync, rename) so a crash never leaves half a record."""
    write_atomic(directory / STATE_FILE, json.dumps(asdict(st)))


def load(directory: Path) -> NetworkState | None:
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        doc = json.loads((directory / STATE_FILE).read_text())
        return NetworkState(**doc)
    return None
