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
import functools
from collections.abc import Callable, Iterable
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


def merge_env(*groups: Iterable[str]) -> list[str]:
    """KEY=value entries from several sources in order, a later KEY replacing an earlier one in its
    place (the one rule for pause and container env: defaults, image env, then the config's)."""
    out: dict[str, str] = {}
    for group in groups:
        for item in group:
            out[item.split("=", 1)[0]] = item
    return list(out.values())


def with_env(*groups: Iterable[str]) -> Option:
    """Add env entries to the spec's (``merge_env``)."""
    def opt(spec: Spec) -> None:
        spec["process"]["env"] = merge_env(spec["process"]["env"], *groups)
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


CAP_SYS_RESOURCE = 24  # bit number in /proc/<pid>/status CapEff


def has_capability(status_text: str, bit: int) -> bool:
    """Whether the CapEff mask of a ``/proc/<pid>/status`` text has capability ``bit``."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def oom_score_floor(restrict: bool, can_lower: bool, own: int) -> int | None:
    """The lowest oom_score_adj criproxy may hand to runc, or None when any value may pass.

    A process without CAP_SYS_RESOURCE cannot lower oom_score_adj below its own, and runc then fails
    the start ("can't get final child's PID from pipe"): so the floor is criproxy's own value when
    the operator asks for it (``restrict_oom_score_adj``, as containerd's option of that name) or when
    criproxy lacks the capability. Otherwise values pass exactly as asked (kubelet's -998 for pause).
    """
    return own if restrict or not can_lower else None


def clamp_oom_score_adj(wanted: int, floor: int | None) -> int:
    """``wanted`` raised to ``floor`` (see ``oom_score_floor``); unchanged when there is none."""
    return wanted if floor is None else max(wanted, floor)


def detect_oom_score_floor(restrict: bool) -> int | None:
    """Read this process's capabilities and oom_score_adj once, at start (two small procfs files)."""
    try:
        with open("/proc/self/status") as f:
            can_lower = has_capability(f.read(), CAP_SYS_RESOURCE)
        with open("/proc/self/oom_score_adj") as f:
            own = int(f.read().strip())
    except (OSError, ValueError):
        can_lower, own = False, 0
    return oom_score_floor(restrict, can_lower, own)


@functools.cache
def running_in_userns() -> bool:
    """Whether criproxy itself runs in a user namespace (its uid_map is not the full identity map)."""
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields[:3] != ["0", "0", "4294967295"]
