"""Pure conversions for pod sandboxes: CRI ↔ records ↔ containerd labels/extensions, and pod files.

No I/O here: everything is a function of its arguments, so it is unit-tested directly and shared by
the RPC modules, recovery and the event relay (``to_cri_status`` feeds GetContainerEvents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from criproxy import errors
from criproxy.config import Config, RuntimeHandler
from criproxy.labels import KIND, KIND_SANDBOX
from criproxy.protos import containers_pb, cri, runc_options
from criproxy.state.sandbox import SandboxRecord, namespace_options

METADATA_TYPE_URL = "github.com/containerd/cri/pkg/store/sandbox/Metadata"
# criproxy's own recovery facts beside containerd-compatible ones (Go ignores unknown JSON keys).
CRIPROXY_KEY = "Criproxy"


def sandbox_name(meta: cri.PodSandboxMetadata) -> str:
    """The CRI name kubelet retries under: ``<pod>_<namespace>_<uid>_<attempt>``."""
    return f"{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


def to_cri_status(rec: SandboxRecord) -> cri.PodSandboxStatus:
    """The PodSandboxStatus kubelet sees (also embedded in container events). Once the network is
    torn down (CNI DEL done, netns unpinned) the IPs are no longer reported, as containerd reports
    none for a closed netns; the record keeps them (recovery, the metadata extension)."""
    cfg = rec.config
    up = not rec.network_torn_down
    network = cri.PodSandboxNetworkStatus(ip=rec.ip if up else "",
                                          additional_ips=[cri.PodIP(ip=i) for i in rec.additional_ips] if up else [])
    return cri.PodSandboxStatus(
        id=rec.id, metadata=cfg.metadata, state=rec.state, created_at=rec.created_at,  # type: ignore[arg-type]
        network=network,
        linux=cri.LinuxPodSandboxStatus(namespaces=cri.Namespace(options=namespace_options(cfg))),
        labels=cfg.labels, annotations=cfg.annotations, runtime_handler=rec.runtime_handler)


def to_cri_item(rec: SandboxRecord) -> cri.PodSandbox:
    """The ListPodSandbox entry of a sandbox."""
    cfg = rec.config
    return cri.PodSandbox(id=rec.id, metadata=cfg.metadata, state=rec.state,  # type: ignore[arg-type]
                          created_at=rec.created_at, labels=cfg.labels, annotations=cfg.annotations,
                          runtime_handler=rec.runtime_handler)


def matches(rec: SandboxRecord, flt: cri.PodSandboxFilter) -> bool:
    """CRI filter semantics: ID (or unique prefix), state, and every selector label equal."""
    if flt.id and not rec.id.startswith(flt.id):
        return False
    if flt.HasField("state") and rec.state != flt.state.state:
        return False
    labels = rec.config.labels
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def container_labels(config: cri.PodSandboxConfig) -> dict[str, str]:
    """containerd labels of the pause container: the pod's labels plus the kind marker."""
    labels = dict(config.labels)
    labels[KIND] = KIND_SANDBOX
    return labels


def config_to_json(config: cri.PodSandboxConfig) -> dict[str, Any]:
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def config_from_json(data: dict[str, Any]) -> cri.PodSandboxConfig:
    return json_format.ParseDict(data, cri.PodSandboxConfig(), ignore_unknown_fields=True)


def metadata_json(rec: SandboxRecord) -> bytes:
    """The sandbox metadata extension, in the shape containerd's CRI plugin writes, plus our facts."""
    doc = {"Version": "v1", "Metadata": {
        "ID": rec.id, "Name": rec.name, "Config": config_to_json(rec.config), "NetNSPath": rec.netns_path,
        "IP": rec.ip, "AdditionalIPs": rec.additional_ips, "RuntimeHandler": rec.runtime_handler,
        "CNIResult": rec.cni_result, "ProcessLabel": "",
        CRIPROXY_KEY: {"CreatedAt": rec.created_at, "Dir": str(rec.dir or ""),
                       "StateDir": str(rec.state_dir or ""), "RuntimeType": rec.runtime_type,
                       "Image": rec.image},
    }}
    return json.dumps(doc, separators=(",", ":")).encode()


def record_from_metadata(raw: bytes, created_at: int) -> SandboxRecord:
    """Rebuild a record from the extension (state comes later, from the task)."""
    meta = json.loads(raw)["Metadata"]
    own = meta.get(CRIPROXY_KEY) or {}
    return SandboxRecord(
        id=meta["ID"], name=meta["Name"], config=config_from_json(meta.get("Config") or {}),
        runtime_handler=meta.get("RuntimeHandler", ""), created_at=int(own.get("CreatedAt") or created_at),
        netns_path=meta.get("NetNSPath") or "", ip=meta.get("IP") or "",
        additional_ips=list(meta.get("AdditionalIPs") or []), cni_result=meta.get("CNIResult"),
        dir=Path(own["Dir"]) if own.get("Dir") else None,
        state_dir=Path(own["StateDir"]) if own.get("StateDir") else None,
        runtime_type=own.get("RuntimeType") or "io.containerd.runc.v2", image=own.get("Image", ""))


# ---- pod files ---------------------------------------------------------------------------------

HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def resolv_conf(dns: cri.DNSConfig) -> str:
    """resolv.conf from the pod's DNSConfig (kubelet has already merged cluster and host DNS)."""
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {s}" for s in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def has_dns(config: cri.PodSandboxConfig) -> bool:
    dns = config.dns_config
    return bool(dns.servers or dns.searches or dns.options)


# ---- runtime handlers ----------------------------------------------------------------------------

RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"


def handler_config(cfg: Config, handler: str) -> RuntimeHandler:
    """The configured runtime for a CRI runtime handler ("" means the default handler).

    "" and "runc" always exist (io.containerd.runc.v2); anything else must be configured.
    """
    name = handler or cfg.default_runtime_handler
    found = cfg.runtime_handlers.get(name)
    if found is not None:
        return found
    if name in ("", "runc"):
        return RuntimeHandler()
    known = ", ".join(sorted({"runc", *cfg.runtime_handlers})) or "runc"
    raise errors.InvalidArgument(f"unknown runtime handler {handler!r} (configured: {known})")


def handler_snapshotter(cfg: Config, handler: str) -> str:
    """The snapshotter of a handler's pods: its own, else the global one (also for a handler no
    longer configured, so a recovered pod's snapshots are still found where they were made)."""
    try:
        return handler_config(cfg, handler).snapshotter or cfg.snapshotter
    except errors.InvalidArgument:
        return cfg.snapshotter


def systemd_cgroup(cfg: Config, handler: str) -> bool:
    """Whether runc places this handler's containers with its systemd cgroup driver.

    The handler's own ``systemd_cgroup`` wins; otherwise the configured (or detected) driver. The
    one answer runc's options, RuntimeConfig and the cgroup-parent check all use. Raises
    INVALID_ARGUMENT for an unknown handler.
    """
    rh = handler_config(cfg, handler)
    if rh.systemd_cgroup is not None:
        return rh.systemd_cgroup
    return cfg.resolved_cgroup_driver() == "systemd"


def container_runtime(cfg: Config, handler: str) -> containers_pb.Container.Runtime:
    """containers.Container.runtime: the shim name plus runc options only when any is set (as Go)."""
    rh = handler_config(cfg, handler)
    runtime = containers_pb.Container.Runtime(name=rh.runtime_type)
    opts = runc_options.Options(binary_name=rh.binary_name, root=rh.root,
                                systemd_cgroup=systemd_cgroup(cfg, handler))
    if opts.ByteSize():
        runtime.options.type_url = RUNC_OPTIONS_TYPE
        runtime.options.value = opts.SerializeToString()
    return runtime
