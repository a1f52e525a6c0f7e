"""The parity matrix: pod and container configs covering the behaviour-carrying fields of the CRI.

Per-container fields are batched as containers of one pod (``MAIN``); pod-level fields get a pod
each (``POD_CASES``). A case only says how to change a kubelet-like config; the runner sends the
same request to criproxy and to the built-in CRI. Case names are ``pod/container`` (the pod's own
sandbox is ``pod/sandbox``) and are what docs/parity.md scopes entries by.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from criproxy.parity import PROBE_SCRIPT
from criproxy.protos import cri

# What the kubelet sends for a container without procMount: Unmasked (see k8s securitycontext).
KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap"]
KUBELET_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

SC = cri.SecurityProfile


@dataclass
class Ctx:
    """What a case may refer to on one side: earlier containers' IDs, scratch files."""

    ids: dict[str, str]
    scratch: Path
    side: str


@dataclass
class CtrCase:
    name: str
    change: Callable[[cri.ContainerConfig, Ctx], None] = lambda cfg, ctx: None
    image: str = "busybox"
    probe: bool = True          # the command is the probe; else it sleeps (a target for others)
    kubelet_defaults: bool = True  # masked/readonly paths and seccomp Unconfined as the kubelet sends


@dataclass
class PodCase:
    name: str
    change: Callable[[cri.PodSandboxConfig, Ctx], None] = lambda cfg, ctx: None
    containers: list[CtrCase] = field(default_factory=lambda: [CtrCase("probe")])
    cgroup_parent: bool = True
    dns: bool = True
    ports: bool = True
    runtime_handler: str = ""


def sc(cfg: cri.ContainerConfig) -> cri.LinuxContainerSecurityContext:
    return cfg.linux.security_context


def _caps(add: list[str] = [], drop: list[str] = [], ambient: list[str] = []) -> Callable[..., None]:  # noqa: B006
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        sc(cfg).capabilities.add_capabilities[:] = add
        sc(cfg).capabilities.drop_capabilities[:] = drop
        sc(cfg).capabilities.add_ambient_capabilities[:] = ambient
        if ambient:
            sc(cfg).run_as_user.value = 1000
    return change


def _set(**fields: object) -> Callable[..., None]:
    """Set plain fields of the container security context."""
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        for k, v in fields.items():
            target = getattr(sc(cfg), k)
            if isinstance(v, int) and hasattr(target, "value"):
                target.value = v
            elif isinstance(v, list):
                getattr(sc(cfg), k)[:] = v
            else:
                setattr(sc(cfg), k, v)
    return change


def _profile(kind: str, ptype: int, ref: str = "") -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        prof = getattr(sc(cfg), kind)
        prof.Clear()
        prof.SetInParent()
        prof.profile_type = ptype
        if ref:
            prof.localhost_ref = ref.format(scratch=ctx.scratch)
    return change


def _seccomp_path(path: str) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        sc(cfg).ClearField("seccomp")
        sc(cfg).seccomp_profile_path = path.format(scratch=ctx.scratch)
    return change


def _apparmor_path(path: str) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        sc(cfg).apparmor_profile = path
    return change


def _resources(**fields: object) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        res = cfg.linux.resources
        for k, v in fields.items():
            if k == "hugepage_limits":
                res.hugepage_limits.extend(cri.HugepageLimit(page_size=p, limit=n) for p, n in v)  # type: ignore[attr-defined]
            elif k == "unified":
                res.unified.update(v)  # type: ignore[arg-type]
            else:
                setattr(res, k, v)
    return change


def _mount(name: str, propagation: int, readonly: bool = False, file: bool = False,
           recursive_ro: bool = False) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        host = ctx.scratch / ("mount-file" if file else "mount-dir")
        cfg.mounts.append(cri.Mount(container_path=f"/mnt/{name}", host_path=str(host), readonly=readonly,
                                    propagation=propagation, recursive_read_only=recursive_ro))  # type: ignore[arg-type]
    return change


def _devices(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    cfg.devices.extend([cri.Device(container_path="/dev/parity-null", host_path="/dev/null", permissions="rwm"),
                        cri.Device(container_path="/dev/parity-zero", host_path="/dev/zero", permissions="r")])


def _env_args_workdir(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    cfg.envs.extend([cri.KeyValue(key="PARITY_A", value=b"1"), cri.KeyValue(key="PARITY_B", value=b"two words"),
                     cri.KeyValue(key="PATH", value=b"/bin:/usr/bin")])
    cfg.args.extend(["first", "second arg"])
    cfg.working_dir = "/tmp"


def _workdir(path: str) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        cfg.working_dir = path
    return change


def _tty(stdin: bool, once: bool, tty: bool) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        cfg.stdin, cfg.stdin_once, cfg.tty = stdin, once, tty
    return change


def _target(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    ns = sc(cfg).namespace_options
    ns.pid = cri.TARGET
    ns.target_id = ctx.ids["target-sleeper"]


def _privileged(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    sc(cfg).privileged = True
    sc(cfg).ClearField("masked_paths")
    sc(cfg).ClearField("readonly_paths")


def _labels(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    cfg.labels["parity/label"] = "x"
    cfg.annotations["parity/annotation"] = "y"
    cfg.stop_signal = cri.SIGNAL_SIGUSR1


def _selinux(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
    sc(cfg).selinux_options.CopyFrom(cri.SELinuxOption(user="system_u", role="system_r", type="container_t",
                                                       level="s0:c1,c2"))


MAIN = PodCase("main", containers=[
    CtrCase("default"),
    CtrCase("bare", kubelet_defaults=False),
    CtrCase("target-sleeper", probe=False),
    CtrCase("target", _target),
    CtrCase("caps-add-drop", _caps(add=["NET_ADMIN", "SYS_TIME"], drop=["CHOWN", "NET_RAW"])),
    CtrCase("caps-drop-all", _caps(add=["NET_BIND_SERVICE"], drop=["ALL"])),
    CtrCase("caps-add-all", _caps(add=["ALL"])),
    CtrCase("caps-ambient", _caps(add=["NET_BIND_SERVICE"], ambient=["NET_BIND_SERVICE"])),
    CtrCase("run-as-user", _set(run_as_user=1000)),
    CtrCase("run-as-username", _set(run_as_username="app", run_as_group=2000, supplemental_groups=[3000])),
    CtrCase("run-as-unknown-uid", _set(run_as_user=4321)),
    CtrCase("groups-strict", _set(run_as_user=1000, supplemental_groups_policy=cri.Strict)),
    CtrCase("readonly-rootfs", _set(readonly_rootfs=True)),
    CtrCase("no-new-privs", _set(no_new_privs=True)),
    CtrCase("masked-custom", _set(masked_paths=["/proc/cpuinfo"], readonly_paths=["/proc/meminfo"])),
    CtrCase("masked-empty", _set(masked_paths=[], readonly_paths=[])),
    CtrCase("selinux-options", _selinux),
    CtrCase("seccomp-runtime-default", _profile("seccomp", SC.RuntimeDefault)),
    CtrCase("seccomp-unconfined", _profile("seccomp", SC.Unconfined)),
    CtrCase("seccomp-localhost", _profile("seccomp", SC.Localhost, "{scratch}/seccomp.json")),
    CtrCase("seccomp-path-runtime-default", _seccomp_path("runtime/default")),
    CtrCase("seccomp-path-docker-default", _seccomp_path("docker/default")),
    CtrCase("seccomp-path-localhost", _seccomp_path("localhost/{scratch}/seccomp.json")),
    CtrCase("apparmor-runtime-default", _profile("apparmor", SC.RuntimeDefault)),
    CtrCase("apparmor-unconfined", _profile("apparmor", SC.Unconfined)),
    CtrCase("apparmor-localhost", _profile("apparmor", SC.Localhost, "parity-profile")),
    CtrCase("apparmor-path-runtime-default", _apparmor_path("runtime/default")),
    CtrCase("apparmor-path-localhost", _apparmor_path("localhost/parity-profile")),
    CtrCase("resources", _resources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                    memory_limit_in_bytes=64 << 20, cpuset_cpus="0", cpuset_mems="0")),
    CtrCase("resources-swap", _resources(memory_limit_in_bytes=64 << 20, memory_swap_limit_in_bytes=128 << 20)),
    CtrCase("hugepages", _resources(hugepage_limits=[("2MB", 0), ("1GB", 0)])),
    CtrCase("unified", _resources(unified={"memory.high": "67108864"})),
    CtrCase("oom-score-adj", _resources(oom_score_adj=500)),
    CtrCase("oom-score-adj-negative", _resources(oom_score_adj=-998)),
    CtrCase("devices", _devices),
    CtrCase("mount-private", _mount("private", cri.PROPAGATION_PRIVATE)),
    CtrCase("mount-host-to-container-ro", _mount("h2c", cri.PROPAGATION_HOST_TO_CONTAINER, readonly=True)),
    CtrCase("mount-bidirectional", _mount("bidi", cri.PROPAGATION_BIDIRECTIONAL)),
    CtrCase("mount-file-ro", _mount("file", cri.PROPAGATION_PRIVATE, readonly=True, file=True)),
    CtrCase("mount-recursive-ro", _mount("rro", cri.PROPAGATION_PRIVATE, readonly=True, recursive_ro=True)),
    CtrCase("env-args-workdir", _env_args_workdir),
    CtrCase("workdir-missing", _workdir("/does/not/exist")),
    CtrCase("tty-stdin", _tty(stdin=True, once=False, tty=True)),
    CtrCase("stdin-once", _tty(stdin=True, once=True, tty=False)),
    CtrCase("image-config", image="cfgimg"),
    CtrCase("image-volumes", image="volimg"),
    CtrCase("privileged-in-unprivileged-pod", _privileged),
    CtrCase("labels-annotations-stop-signal", _labels),
])


def _pod_ns(**modes: int) -> Callable[..., None]:
    def change(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
        for k, v in modes.items():
            setattr(cfg.linux.security_context.namespace_options, k, v)
    return change


def _ctr_ns(**modes: int) -> Callable[..., None]:
    def change(cfg: cri.ContainerConfig, ctx: Ctx) -> None:
        for k, v in modes.items():
            setattr(sc(cfg).namespace_options, k, v)
    return change


def _host_network(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    """As the kubelet sends it: no hostname (the node's own is kept; a hostname is refused below)."""
    cfg.linux.security_context.namespace_options.network = cri.NODE
    cfg.hostname = ""


def _pod_sysctls(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    cfg.linux.sysctls.update({"net.ipv4.ping_group_range": "0 2147483647", "kernel.shm_rmid_forced": "1",
                              "net.ipv4.ip_local_port_range": "20000 30000",
                              "net.ipv4.ip_unprivileged_port_start": "80"})


def _bad_sysctls(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    cfg.linux.sysctls.update({"vm.swappiness": "10"})  # not namespaced: no pod may set it


def _userns(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    ns = cfg.linux.security_context.namespace_options.userns_options
    ns.mode = cri.POD
    ns.uids.append(cri.IDMapping(host_id=1_000_000, container_id=0, length=65536))
    ns.gids.append(cri.IDMapping(host_id=1_000_000, container_id=0, length=65536))


def _pod_secctx(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    psc = cfg.linux.security_context
    psc.run_as_user.value = 1000
    psc.run_as_group.value = 2000
    psc.supplemental_groups[:] = [3000]
    psc.readonly_rootfs = True
    psc.seccomp.profile_type = SC.RuntimeDefault
    psc.apparmor.profile_type = SC.RuntimeDefault


def _pod_privileged(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    cfg.linux.security_context.privileged = True


def _pod_resources(cfg: cri.PodSandboxConfig, ctx: Ctx) -> None:
    cfg.linux.overhead.CopyFrom(cri.LinuxContainerResources(cpu_shares=10, memory_limit_in_bytes=16 << 20))
    cfg.linux.resources.CopyFrom(cri.LinuxContainerResources(cpu_period=100000, cpu_quota=100000,
                                                             cpu_shares=1024, memory_limit_in_bytes=256 << 20))


POD_CASES = [
    MAIN,
    PodCase("host-network", _host_network, [CtrCase("probe", _ctr_ns(network=cri.NODE))]),
    PodCase("host-network-hostname", _pod_ns(network=cri.NODE), [CtrCase("probe", _ctr_ns(network=cri.NODE))]),
    PodCase("host-pid", _pod_ns(pid=cri.NODE), [CtrCase("probe", _ctr_ns(pid=cri.NODE))]),
    PodCase("host-ipc", _pod_ns(ipc=cri.NODE), [CtrCase("probe", _ctr_ns(ipc=cri.NODE))]),
    PodCase("pod-pid", _pod_ns(pid=cri.POD), [CtrCase("probe", _ctr_ns(pid=cri.POD))]),
    PodCase("sysctls", _pod_sysctls),
    PodCase("pod-security-context", _pod_secctx),
    PodCase("privileged", _pod_privileged, [CtrCase("probe", _privileged)]),
    PodCase("pod-resources", _pod_resources),
    PodCase("minimal", cgroup_parent=False, dns=False, ports=False),
    PodCase("sysctl-not-namespaced", _bad_sysctls),
    PodCase("user-namespace", _userns),
    PodCase("unknown-runtime-handler", runtime_handler="no-such-handler"),
]


SECCOMP_PROFILE = json.dumps({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
})


def container_config(case: CtrCase, image: str, ctx: Ctx) -> cri.ContainerConfig:
    """A kubelet-like container config, then the case's change."""
    cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=case.name, attempt=0),
                              image=cri.ImageSpec(image=image), log_path=f"{case.name}/0.log",
                              labels={"io.kubernetes.container.name": case.name,
                                      "io.kubernetes.pod.name": "parity", "io.kubernetes.pod.namespace": "default"},
                              annotations={"io.kubernetes.container.restartCount": "0",
                                           "io.kubernetes.container.terminationMessagePath": "/dev/termination-log"})
    cfg.command[:] = ["sh", "-c", PROBE_SCRIPT] if case.probe else ["sleep", "1000"]
    if case.image != "busybox":
        cfg.command[:] = ["sh", "-c", PROBE_SCRIPT]  # entrypoint replaced; image env/user/workdir apply
    s = cfg.linux.security_context
    s.namespace_options.pid = cri.CONTAINER
    if case.kubelet_defaults:
        s.masked_paths[:] = KUBELET_MASKED
        s.readonly_paths[:] = KUBELET_READONLY
        s.seccomp.profile_type = SC.Unconfined
    case.change(cfg, ctx)
    return cfg
