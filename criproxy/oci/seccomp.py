"""criproxy's RuntimeDefault seccomp profile, written here rather than copied from anywhere.

Why a deny-list (default ALLOW, listed calls fail with EPERM) and not Docker's allow-list: an
allow-list that forgets one syscall breaks ordinary programs in ways that are hard to see (glibc
falls back on ENOSYS, not on EPERM), while the danger a default profile is meant to remove is a short,
well-known list: kernel modules, kexec, reboot, clock setting, keyrings, BPF and perf, ptrace and
process_vm_*, namespace creation, mounting, swap, accounting, and obsolete calls. Calls that a
capability legitimately unlocks (mount with CAP_SYS_ADMIN, ptrace with CAP_SYS_PTRACE …) stay allowed
when the container holds that capability, as Docker's profile does.
"""

from __future__ import annotations

from typing import Any

EPERM = 1
ENOSYS = 38
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]

# Always refused: no capability makes these reasonable inside a pod.
ALWAYS_DENIED = [
    "add_key", "create_module", "get_kernel_syms", "keyctl", "kexec_file_load", "kexec_load", "nfsservctl",
    "open_by_handle_at", "query_module", "request_key", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old", "_sysctl", "sysfs", "fsconfig", "fsmount", "fsopen",
    "fspick", "move_mount", "open_tree",
]

# Refused unless the container holds the capability named.
DENIED_WITHOUT_CAP: dict[str, list[str]] = {
    "CAP_SYS_ADMIN": ["bpf", "fanotify_init", "lookup_dcookie", "mount", "name_to_handle_at", "perf_event_open",
                      "quotactl", "setdomainname", "sethostname", "setns", "umount", "umount2", "unshare",
                      "pivot_root", "swapon", "swapoff", "syslog"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "CAP_SYS_PTRACE": ["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    "CAP_SYS_PACCT": ["acct"],
}

# clone() flags that create namespaces; refused without CAP_SYS_ADMIN (one rule per bit, because
# seccomp can only compare a masked argument for equality).
CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]


def default_profile(capabilities: list[str]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for RuntimeDefault, given the container's effective caps."""
    caps = set(capabilities)
    denied = list(ALWAYS_DENIED)
    for cap, names in DENIED_WITHOUT_CAP.items():
        if cap not in caps:
            denied += [n for n in names if n not in denied]
    syscalls: list[dict[str, Any]] = [{"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    if "CAP_SYS_ADMIN" not in caps:
        syscalls += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                      "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}
                     for bit in CLONE_NS_FLAGS]
        # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(ARCHES), "syscalls": syscalls}
