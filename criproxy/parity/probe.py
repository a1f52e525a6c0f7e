"""The probe: one busybox shell script run as a container's command, and the parser of its output.

It prints what a process in the container sees, section by section (``### name`` lines):
capabilities, seccomp mode and ids from ``/proc/self/status``, ``ulimit -a``, a few sysctls,
``oom_score_adj``, link states, ``/proc/self/mountinfo``, its cgroups and their limit files,
``/etc/hosts``, ``/etc/resolv.conf``, hostname, cwd, environment, arguments, stdio and ``/dev``.
``probe_document`` turns the sections into one JSON document (capability masks as names, mounts
keyed by mount point, link and pipe numbers that differ every run replaced) so ``diff`` can name
each difference ``probe.status.CapEff[CAP_NET_RAW]`` or ``probe.mounts[/etc/hosts].options``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from criproxy.parity.diff import _as_set

SYSCTLS = (
    "net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range", "net/ipv4/ip_local_port_range",
    "net/ipv4/ip_forward", "net/ipv4/tcp_syncookies", "net/core/somaxconn", "kernel/shm_rmid_forced",
    "kernel/shmmax", "kernel/msgmax", "kernel/hostname", "kernel/domainname",
)
CGROUP_FILES = (
    "cpu/cpu.shares", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "memory/memory.limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes", "memory/memory.soft_limit_in_bytes", "memory/memory.swappiness",
    "memory/memory.oom_control", "pids/pids.max", "cpuset/cpuset.cpus", "cpuset/cpuset.mems",
    "cpu.max", "cpu.weight", "memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max",
    "pids.max", "cpuset.cpus", "cpuset.mems",
)
STATUS_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters",
               "Uid", "Gid", "Groups", "Umask")

PROBE_SCRIPT = "\n".join([
    "exec 2>&1",  # one stream: stderr lines land in their own section, in order
    's() { echo "### $1"; }',
    "count() { echo $#; }",
    f"s status; grep -E '^({'|'.join(STATUS_KEYS)}):' /proc/self/status",
    "s ulimit; ulimit -a 2>&1",
    f"s sysctl; for f in {' '.join(SYSCTLS)}; do echo \"$f=$(cat /proc/sys/$f 2>&1)\"; done",
    "s oom; cat /proc/self/oom_score_adj",
    "s links; ip -o link 2>&1",
    "s mounts; cat /proc/self/mountinfo",
    "s cgroup; cat /proc/self/cgroup",
    f"s cgroupfiles; for f in {' '.join(CGROUP_FILES)}; do [ -e /sys/fs/cgroup/$f ] && "
    "echo \"$f=$(cat /sys/fs/cgroup/$f 2>&1 | tr '\\n' ' ')\"; done; "
    "for f in /sys/fs/cgroup/hugetlb/hugetlb.*.limit_in_bytes /sys/fs/cgroup/hugetlb.*.max; do [ -e $f ] && "
    "echo \"${f#/sys/fs/cgroup/}=$(cat $f 2>&1)\"; done",
    "s hosts; cat /etc/hosts 2>&1",
    "s resolv; cat /etc/resolv.conf 2>&1",
    "s hostname; hostname",
    "s id; id",
    "s cwd; pwd",
    "s env; env | sort",
    "s args; for a in \"$0\" \"$@\"; do echo \"$a\"; done",
    "s stdio; for fd in 0 1 2; do echo \"$fd=$(readlink /proc/self/fd/$fd)\"; done; "
    "[ -t 0 ] && echo stdin-is-tty; [ -t 1 ] && echo stdout-is-tty",
    "s dev; ls -ln /dev",
    "s pids; if [ $(count /proc/[0-9]*) -lt 40 ]; then for p in /proc/[0-9]*; do cat $p/comm; done "
    "2>/dev/null | grep -vxE 'sh|cat|grep|sort|exe|runc.*' | sort; else echo many; fi",
    # a moment before exiting: containerd 1.6's CRI sometimes drops the output a process had still
    # in its pipe when it exited (the probe's last sections went missing under load)
    "s end; sleep 1",
])

# Capability numbers (linux/capability.h) for decoding the masks of /proc/self/status.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)

PROBE_RULES: dict[str, Callable[[list[Any]], dict[str, Any] | None]] = {
    **{f"status.{k}": _as_set for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "mounts[].propagation": _as_set,
    "hosts": _as_set,
}


def cri_log_text(log: str) -> str:
    """The output a container wrote, from its CRI log file (``TS STREAM TAG TEXT`` lines, partial
    ``P`` records joined), with carriage returns of a tty removed."""
    out: list[str] = []
    for line in log.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else ""
        out.append(text if parts[2] == "P" else text + "\n")
    return "".join(out).replace("\r", "")


def parse_probe(text: str) -> dict[str, list[str]]:
    """Sections of the probe's output: name -> its lines (lines before the first header dropped)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def decode_caps(mask: str) -> list[str]:
    """``00000000a80425fb`` -> ``['CAP_CHOWN', …]``; an unparsable mask is kept as it is."""
    try:
        bits = int(mask, 16)
    except ValueError:
        return [mask]
    names = []
    for i in range(bits.bit_length()):
        if bits >> i & 1:
            names.append(f"CAP_{CAPABILITIES[i]}" if i < len(CAPABILITIES) else f"CAP_{i}")
    return names


def _kv(lines: list[str], sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        key, found, value = line.partition(sep)
        if found:
            out[key.strip()] = value.strip()
    return out


_ULIMIT = re.compile(r"^(.*?)\s+(\S+)$")


def _ulimit(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        m = _ULIMIT.match(line.strip())
        if m:
            out[" ".join(m.group(1).split())] = m.group(2)
    return out


_MAC = re.compile(r"\b(?!00(?::00){5}\b)(?!ff(?::ff){5}\b)[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
_IFINDEX = re.compile(r"@if\d+")


def _links(lines: list[str]) -> dict[str, str]:
    """Interface name -> flags and state, for lo and eth* only (a host netns has everyone's veths)."""
    out: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^\d+:\s+([^:]+):\s+(.*)$", line)
        if not m:
            continue
        name = _IFINDEX.sub("@if<N>", m.group(1).strip())
        if not (name == "lo" or name.startswith("eth")):
            continue
        rest = _MAC.sub("<mac>", re.sub(r"\s+", " ", m.group(2).replace("\\", " ")).strip())
        out[name] = rest
    return out


_OVERLAY_DIRS = re.compile(r"\b(lowerdir|upperdir|workdir)=[^,]*")
_PEER_GROUP = re.compile(r"^(shared|master|propagate_from):\d+$")


def _mounts(lines: list[str]) -> dict[str, Any]:
    """mountinfo keyed by mount point; mount and peer-group numbers (differ every run) dropped."""
    out: dict[str, Any] = {}
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        point = fields[4]
        key = point
        n = 2
        while key in out:
            key, n = f"{point}#{n}", n + 1
        out[key] = {
            "root": fields[3],
            "options": fields[5],
            "propagation": [_PEER_GROUP.sub(r"\1", f) for f in fields[6:]],
            "fstype": tail[0],
            "source": tail[1],
            "super": _OVERLAY_DIRS.sub(r"\1=<snapshots>", tail[2]) if len(tail) > 2 else "",
        }
    return out


def _cgroups(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        _num, _, rest = line.partition(":")
        ctrl, _, path = rest.partition(":")
        out[ctrl or "unified"] = path
    return out


def _dev(lines: list[str]) -> dict[str, str]:
    """``ls -ln /dev`` as name -> mode, owner, group and device numbers (dates dropped)."""
    out: dict[str, str] = {}
    for line in lines:
        f = line.split()
        if len(f) < 6 or line.startswith("total"):
            continue
        name = f[-1] if "->" not in f else " ".join(f[f.index("->") - 1:])
        if f[0][:1] in "cb" and len(f) >= 10:
            info = f"{f[0]} {f[2]}:{f[3]} {f[4]}{f[5]}"
        else:
            info = f"{f[0]} {f[2]}:{f[3]}"
        out[name] = info
    return out


def probe_document(sections: dict[str, list[str]]) -> dict[str, Any]:
    """The probe's sections as one JSON document shaped for ``diff`` (with ``PROBE_RULES``)."""
    status: dict[str, Any] = dict(_kv(sections.get("status", []), ":"))
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if key in status:
            status[key] = decode_caps(status[key])
    doc: dict[str, Any] = {
        "complete": "end" in sections,
        "status": status,
        "ulimit": _ulimit(sections.get("ulimit", [])),
        "sysctl": _kv(sections.get("sysctl", []), "="),
        "oom_score_adj": "\n".join(sections.get("oom", [])),
        "links": _links(sections.get("links", [])),
        "mounts": _mounts(sections.get("mounts", [])),
        "cgroup": _cgroups(sections.get("cgroup", [])),
        "cgroupfiles": _kv(sections.get("cgroupfiles", []), "="),
        "hosts": sorted({" ".join(line.split()) for line in sections.get("hosts", []) if line.strip()}),
        "resolv": [" ".join(line.split()) for line in sections.get("resolv", []) if line.strip()],
        "hostname": "\n".join(sections.get("hostname", [])),
        "id": "\n".join(sections.get("id", [])),
        "cwd": "\n".join(sections.get("cwd", [])),
        "env": _kv(sections.get("env", []), "="),
        "args": sections.get("args", []),
        "stdio": [re.sub(r":\[\d+\]", ":[N]", s) for s in sections.get("stdio", [])],
        "dev": _dev(sections.get("dev", [])),
        "pids": sections.get("pids", []),
    }
    return doc
