"""The OCI runtime spec as a plain dict, built from a default plus small options.

``build_spec(default_spec(), with_args([...]), with_hostname("x"), …)`` — each option is a pure
function of the spec, tested on its own, so sandbox and container creation read as a list of the
decisions they make. The default matches what containerd's Go client generates for Linux
(oci.populateDefaultUnixSpec) after the CRI plugin strips its default security settings: no
``process.rlimits`` (the client's RLIMIT_NOFILE 1024/1024 is dropped), so a pod's processes inherit
the limits of the runtime that starts them, as they do under containerd's CRI.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Spec = dict[str, Any]
Option = Callable[[Spec], None]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_DEFAULT: Spec = {
    "ociVersion": "1.1.0",
    "root": {"path": "rootfs", "readonly": False},
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": [],
        "env": [DEFAULT_PATH],
        "cwd": "/",
        "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": False,
    },
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    },
}


def default_spec() -> Spec:
    """A fresh copy of the default Linux spec (callers mutate it through options)."""
    return copy.deepcopy(_DEFAULT)


def build_spec(spec: Spec, *options: Option) -> Spec:
    for opt in options:
        opt(spec)
    return spec


def with_args(args: list[str]) -> Option:
    def opt(spec: Spec) -> None:
        spec["process"]["args"] = list(args)
    return opt


def with_env(env: list[str]) -> Option:
    """Set env entries, a later KEY=… replacing an earlier one (image env, then config env)."""
    def opt(spec: Spec) -> None:
        out: dict[str, str] = {}
        for item in [*spec["process"]["env"], *env]:
            out[item.split("=", 1)[0]] = item
        spec["process"]["env"] = list(out.values())
    return opt


def with_cwd(cwd: str) -> Option:
    def opt(spec: Spec) -> None:
        if cwd:
            spec["process"]["cwd"] = cwd
    return opt


def with_hostname(hostname: str) -> Option:
    def opt(spec: Spec) -> None:
        if hostname:
            spec["hostname"] = hostname
    return opt


def with_annotations(annotations: dict[str, str]) -> Option:
    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(annotations)
    return opt


def with_mount(destination: str, source: str, options: list[str], mtype: str = "bind") -> Option:
    """Add a mount, replacing any default mount at the same destination."""
    def opt(spec: Spec) -> None:
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != destination]
        spec["mounts"].append({"destination": destination, "type": mtype, "source": source,
                               "options": list(options)})
    return opt


def with_namespace(ns_type: str, path: str = "") -> Option:
    """Join the namespace at ``path`` (or create a new one when path is empty)."""
    def opt(spec: Spec) -> None:
        nss = [n for n in spec["linux"]["namespaces"] if n["type"] != ns_type]
        nss.append({"type": ns_type, "path": path} if path else {"type": ns_type})
        spec["linux"]["namespaces"] = nss
    return opt


def without_namespace(ns_type: str) -> Option:
    """Share the host's namespace of this type (host network/pid/ipc)."""
    def opt(spec: Spec) -> None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != ns_type]
    return opt


def with_cgroups_path(path: str) -> Option:
    def opt(spec: Spec) -> None:
        if path:
            spec["linux"]["cgroupsPath"] = path
    return opt


def with_oom_score_adj(value: int) -> Option:
    def opt(spec: Spec) -> None:
        spec["process"]["oomScoreAdj"] = value
    return opt


def with_sysctls(sysctls: dict[str, str]) -> Option:
    def opt(spec: Spec) -> None:
        if sysctls:
            spec["linux"].setdefault("sysctl", {}).update(sysctls)
    return opt


def clamp_oom_score_adj(wanted: int) -> int:
    """Never below criproxy's own oom_score_adj: without CAP_SYS_RESOURCE a lower value makes runc fail.

    This is what containerd's ``restrict_oom_score_adj`` does; kubelet asks for -998 on sandboxes.
    """
    try:
        with open("/proc/self/oom_score_adj") as f:
            own = int(f.read().strip())
    except (OSError, ValueError):
        own = 0
    return max(wanted, own)
