"""The pause container's OCI runtime spec, built from the PodSandboxConfig and the pause image.

Pure: every input (paths of the pod's files, the netns, the clamp for oom_score_adj) is passed in,
so the decisions are unit-tested without containerd. Mirrors what containerd's CRI plugin gives a
sandbox: the image's entrypoint, the pod's hostname, the pod's own hosts/resolv.conf/hostname and
/dev/shm, its namespaces (host network/pid/ipc or new ones), sysctls (with containerd 2.x's
unprivileged ports/ICMP defaults), cgroup parent, run-as user,
a read-only root, the lowest CPU shares and oom_score_adj -998 (clamped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from criproxy import labels as lb
from criproxy.oci import cgroups, hostfacts
from criproxy.oci import container as oc
from criproxy.oci import spec as oci
from criproxy.protos import cri
from criproxy.state.sandbox import namespace_options

SANDBOX_OOM_SCORE_ADJ = -998
UNPRIVILEGED_PORTS = ("net.ipv4.ip_unprivileged_port_start", "0")
UNPRIVILEGED_ICMP = ("net.ipv4.ping_group_range", "0 2147483647")
SANDBOX_CPU_SHARES = 2
DEFAULT_ARGS = ["/pause"]


@dataclass(frozen=True)
class SandboxFiles:
    """Host paths of the files every container of the pod shares."""

    hostname: str
    hosts: str
    resolv_conf: str
    shm: str


def process_args(image_config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd of the pause image (``/pause`` if it names neither)."""
    cfg = image_config.get("config") or {}
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    return args or list(DEFAULT_ARGS)


def sandbox_annotations(sandbox_id: str, config: cri.PodSandboxConfig, image: str) -> dict[str, str]:
    """The annotations the shim and hooks read (the sandbox ID also groups a pod's shim)."""
    meta = config.metadata
    out = {lb.CONTAINER_TYPE: "sandbox", lb.SANDBOX_ID_ANNOTATION: sandbox_id, lb.SANDBOX_NAME: meta.name,
           lb.SANDBOX_NAMESPACE: meta.namespace, lb.SANDBOX_UID: meta.uid,
           lb.SANDBOX_LOG_DIRECTORY: config.log_directory, lb.SANDBOX_IMAGE_NAME: image}
    res = config.linux.resources
    if config.linux.HasField("resources"):
        out.update({lb.SANDBOX_CPU_PERIOD: str(res.cpu_period), lb.SANDBOX_CPU_QUOTA: str(res.cpu_quota),
                    lb.SANDBOX_CPU_SHARES: str(res.cpu_shares), lb.SANDBOX_MEMORY: str(res.memory_limit_in_bytes)})
    return out


def pod_sysctls(config: cri.PodSandboxConfig, unprivileged_ports: bool, unprivileged_icmp: bool,
                in_userns: bool) -> dict[str, str]:
    """The pod's sysctls plus containerd 2.x's defaults for a pod with its own network namespace:
    any port may be bound and any group may open ICMP echo sockets without a capability
    (``enable_unprivileged_ports``/``enable_unprivileged_icmp``). The pod's own values win; the ICMP
    default is skipped inside a user namespace, where the group range cannot cover every group."""
    out = dict(config.linux.sysctls)
    if namespace_options(config).network != cri.NODE:
        if unprivileged_ports:
            out.setdefault(*UNPRIVILEGED_PORTS)
        if unprivileged_icmp and not in_userns:
            out.setdefault(*UNPRIVILEGED_ICMP)
    return out


def _namespaces(config: cri.PodSandboxConfig, netns: str) -> list[oci.Option]:
    ns = namespace_options(config)
    opts: list[oci.Option] = []
    if ns.network == cri.NODE:
        opts += [oci.without_namespace("network"), oci.without_namespace("uts")]
    else:
        opts.append(oci.with_namespace("network", netns))
    if ns.pid == cri.NODE:
        opts.append(oci.without_namespace("pid"))
    if ns.ipc == cri.NODE:
        opts.append(oci.without_namespace("ipc"))
    return opts


def _mounts(files: SandboxFiles) -> list[oci.Option]:
    ro = ["rbind", "ro", "nosuid", "nodev", "noexec"]
    return [oci.with_mount("/dev/shm", files.shm, ["rbind", "ro", "nosuid", "nodev", "noexec"]),
            oci.with_mount("/etc/hostname", files.hostname, ro),
            oci.with_mount("/etc/hosts", files.hosts, ro),
            oci.with_mount("/etc/resolv.conf", files.resolv_conf, ro)]


def _security(config: cri.PodSandboxConfig) -> oci.Option:
    sc = config.linux.security_context

    def opt(spec: oci.Spec) -> None:
        user = spec["process"]["user"]
        if sc.HasField("run_as_user"):
            user["uid"] = sc.run_as_user.value
        if sc.HasField("run_as_group"):
            user["gid"] = sc.run_as_group.value
        if sc.supplemental_groups:
            user["additionalGids"] = list(sc.supplemental_groups)
        spec["root"]["readonly"] = True  # pause never writes; kubelet asks for it on newer versions
        spec["linux"]["resources"]["cpu"] = {"shares": SANDBOX_CPU_SHARES}
        spec["process"]["noNewPrivileges"] = True
    return opt


def _seccomp(config: cri.PodSandboxConfig) -> oci.Option:
    """The pod's seccomp profile on pause too (as containerd does), except for privileged pods."""
    sc = config.linux.security_context
    if sc.privileged:
        return oci.with_annotations({})
    as_container = cri.LinuxContainerSecurityContext(seccomp_profile_path=sc.seccomp_profile_path)
    if sc.HasField("seccomp"):   # an unset profile must stay unset (its zero value means RuntimeDefault)
        as_container.seccomp.CopyFrom(sc.seccomp)
    return oc.with_seccomp(hostfacts.seccomp_profile(as_container, list(oci.DEFAULT_CAPS)))


def pause_spec(sandbox_id: str, config: cri.PodSandboxConfig, image_config: dict[str, Any], image: str,
               netns: str, files: SandboxFiles, oom_score_adj: int,
               sysctls: dict[str, str] | None = None, default_cgroup_parent: str = "") -> oci.Spec:
    """The whole pause spec; ``oom_score_adj`` is already clamped by the caller and ``sysctls`` (from
    ``pod_sysctls``; the pod's own when None) already carry the defaults."""
    cfg = image_config.get("config") or {}
    host_net = namespace_options(config).network == cri.NODE
    return oci.build_spec(
        oci.default_spec(),
        oci.with_args(process_args(image_config)),
        oci.with_env(list(cfg.get("Env") or [])),
        oci.with_cwd(str(cfg.get("WorkingDir") or "")),
        oci.with_hostname("" if host_net else config.hostname),
        *_namespaces(config, netns),
        *_mounts(files),
        _security(config),
        _seccomp(config),
        oci.with_sysctls(dict(config.linux.sysctls) if sysctls is None else sysctls),
        oci.with_cgroups_path(cgroups.cgroups_path(config.linux.cgroup_parent, sandbox_id, default_cgroup_parent)),
        oci.with_oom_score_adj(oom_score_adj),
        oci.with_annotations(sandbox_annotations(sandbox_id, config, image)),
    )
