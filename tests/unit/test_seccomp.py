"""RuntimeDefault seccomp: the allow-list's decisions, checked by evaluating the produced profile the
way the kernel filter would (first rule naming the call whose argument checks hold, else default)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Any

import pytest

from criproxy.oci import seccomp
from criproxy.oci.container import CAP_NAMES
from criproxy.oci.spec import DEFAULT_CAPS

EPERM, ENOSYS = 1, 38
AF_UNIX, AF_INET, AF_NETLINK, AF_VSOCK = 1, 2, 16, 40
CLONE_NEWNET, CLONE_NEWUSER, SIGCHLD = 0x40000000, 0x10000000, 17


def _holds(cond: dict[str, Any], args: tuple[int, ...]) -> bool:
    value = args[cond["index"]] if cond["index"] < len(args) else 0
    op = cond["op"]
    if op == "SCMP_CMP_EQ":
        return bool(value == cond["value"])
    if op == "SCMP_CMP_NE":
        return bool(value != cond["value"])
    if op == "SCMP_CMP_MASKED_EQ":
        return bool(value & cond["value"] == cond.get("valueTwo", 0))
    raise AssertionError(f"operator {op} not modelled")


def verdict(profile: dict[str, Any], name: str, *args: int) -> str | int:
    """"allow" or the errno the call gets."""
    for rule in profile["syscalls"]:
        if name in rule["names"] and all(_holds(c, args) for c in rule.get("args", [])):
            return "allow" if rule["action"] == "SCMP_ACT_ALLOW" else int(rule["errnoRet"])
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    return int(profile["defaultErrnoRet"])


def profile(caps: list[str] | None = None, arch: str = "amd64", kernel: str = "6.1.0") -> dict[str, Any]:
    return seccomp.default_profile(list(DEFAULT_CAPS) if caps is None else caps, arch, kernel)


def test_an_allow_list_refusing_with_eperm() -> None:
    p = profile()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == EPERM
    for name in ("read", "write", "openat", "execve", "exit_group", "futex", "epoll_wait", "fchmodat2", "statx",
                 "rt_sigaction", "getrandom", "rseq", "close_range", "clock_nanosleep", "io_setup", "chroot"):
        assert verdict(p, name) == "allow", name
    for name in ("kexec_load", "add_key", "keyctl", "request_key", "userfaultfd", "swapon", "init_module",
                 "mount", "unshare", "setns", "bpf", "perf_event_open", "reboot", "settimeofday", "acct",
                 "no_such_call"):
        assert verdict(p, name) == EPERM, name


@pytest.mark.parametrize("caps", [list(DEFAULT_CAPS), list(CAP_NAMES)])
def test_io_uring_refused_whatever_the_capabilities(caps: list[str]) -> None:
    p = profile(caps)
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert verdict(p, name) == EPERM


def test_socket_families_restricted() -> None:
    p = profile()
    for family in (AF_UNIX, AF_INET, AF_NETLINK):
        assert verdict(p, "socket", family, 1, 0) == "allow"
    assert verdict(p, "socket", AF_VSOCK, 1, 0) == EPERM
    assert verdict(profile(list(CAP_NAMES)), "socket", AF_VSOCK, 1, 0) == EPERM


def test_personality_by_argument() -> None:
    p = profile()
    for persona in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF):          # linux, linux32, UNAME26, query
        assert verdict(p, "personality", persona) == "allow"
    assert verdict(p, "personality", 0x0040000) == EPERM                 # ADDR_NO_RANDOMIZE


def test_clone_namespaces_need_cap_sys_admin() -> None:
    plain, admin = profile(), profile([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    assert verdict(plain, "clone", SIGCHLD) == "allow"
    assert verdict(plain, "clone", SIGCHLD | CLONE_NEWNET) == EPERM
    assert verdict(plain, "clone", CLONE_NEWUSER) == EPERM
    assert verdict(plain, "clone3") == ENOSYS                    # libc falls back to clone on ENOSYS
    assert verdict(admin, "clone", SIGCHLD | CLONE_NEWNET) == "allow"
    assert verdict(admin, "clone3") == "allow" and verdict(admin, "mount") == "allow"
    assert verdict(admin, "unshare") == "allow"
    s390 = profile(arch="s390x")                                 # flags are the second argument there
    assert verdict(s390, "clone", 0, SIGCHLD | CLONE_NEWNET) == EPERM and verdict(s390, "clone", 0, 0) == "allow"


@pytest.mark.parametrize(("cap", "names"), [
    ("CAP_SYS_BOOT", ["reboot"]), ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd"]),
    ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
    ("CAP_SYS_PACCT", ["acct"]), ("CAP_SYS_RAWIO", ["iopl", "ioperm"]), ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_SYS_NICE", ["mbind", "set_mempolicy"]), ("CAP_SYSLOG", ["syslog"]), ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]), ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
])
def test_capability_unlocks_its_calls(cap: str, names: list[str]) -> None:
    without, with_cap = profile(), profile([*DEFAULT_CAPS, cap])
    for name in names:
        assert (verdict(without, name), verdict(with_cap, name)) == (EPERM, "allow"), name


def test_dropping_a_default_capability_removes_its_call() -> None:
    assert verdict(profile([c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]), "chroot") == EPERM


def test_ptrace_from_kernel_4_8() -> None:
    # containerd 1.7 and 2.x allow process_vm_readv/writev with ptrace from 4.8 (1.6: ptrace only)
    for name in ("ptrace", "process_vm_readv", "process_vm_writev"):
        assert verdict(profile(kernel="4.4.0-210-generic"), name) == EPERM
        assert verdict(profile(kernel="4.8.0"), name) == "allow"
        assert verdict(profile(kernel="6.18.44-fc"), name) == "allow"
        assert verdict(profile(kernel="4.4.0", caps=[*DEFAULT_CAPS, "CAP_SYS_PTRACE"]), name) == "allow"


def test_name_to_handle_at_without_capabilities() -> None:
    # allowed outright by containerd 1.7 and 2.x; open_by_handle_at still needs CAP_DAC_READ_SEARCH
    assert verdict(profile(), "name_to_handle_at") == "allow"
    assert verdict(profile(), "open_by_handle_at") == EPERM


def test_architecture_aware() -> None:
    amd64, arm64 = profile(arch="amd64"), profile(arch="arm64")
    assert amd64["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert arm64["architectures"] == ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    assert verdict(amd64, "arch_prctl") == "allow" and verdict(arm64, "arch_prctl") == EPERM
    assert verdict(arm64, "set_tls") == "allow" and verdict(amd64, "set_tls") == EPERM
    assert seccomp.host_arch("x86_64") == "amd64" and seccomp.host_arch("aarch64") == "arm64"


def test_profile_is_a_fresh_copy() -> None:
    a = profile()
    next(r for r in a["syscalls"] if r["names"] == ["socket"])["args"][0]["value"] = 0
    assert verdict(profile(), "socket", AF_VSOCK) == EPERM


def test_rules_ship_as_package_data() -> None:
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["criproxy"]
    assert any(fnmatch.fnmatch(f"oci/{seccomp.DATA}", p) for p in patterns)
    assert (root / "criproxy" / "oci" / seccomp.DATA).is_file()
