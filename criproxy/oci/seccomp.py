"""criproxy's RuntimeDefault seccomp profile: an allow-list kept as data (``seccomp_default.json``).

Why an allow-list (default ERRNO/EPERM, listed calls allowed): it is what containerd's CRI and Docker
apply, so a pod gets the same confinement whichever runtime runs it, and a syscall the kernel adds
later (io_uring was one) stays refused until someone decides it is safe. The data holds the facts:
syscall names grouped with the conditions under which they are allowed (a capability the container
holds or must not hold, the host architecture, a minimum kernel, argument filters such as the
harmless ``personality`` values, the AF_VSOCK-less ``socket`` and the namespace-less ``clone``).

``default_profile`` resolves those conditions for one container — its capabilities and this host's
architecture and kernel — into the OCI ``linux.seccomp`` object, as containerd does at create time.
Names the host's libseccomp does not know are skipped by runc, so one list serves every kernel.
"""

from __future__ import annotations

import copy
import functools
import json
import platform
from importlib import resources
from typing import Any

DATA = "seccomp_default.json"


@functools.cache
def profile_data() -> dict[str, Any]:
    """The packaged rules (read once; a few kilobytes shipped with criproxy)."""
    data: dict[str, Any] = json.loads(resources.files("criproxy.oci").joinpath(DATA).read_text())
    return data


def host_arch(machine: str | None = None) -> str:
    """The profile's name for this host's architecture ("amd64", "arm64", …; "" if unknown)."""
    machines: dict[str, str] = profile_data()["machines"]
    return machines.get(machine if machine is not None else platform.machine(), "")


def _kernel_at_least(release: str, wanted: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return parts(release) >= parts(wanted)


def _applies(when: dict[str, Any], caps: set[str], arch: str, kernel: str) -> bool:
    if "arches" in when and arch not in when["arches"]:
        return False
    if arch in when.get("notArches", ()):
        return False
    if not set(when.get("caps", ())) <= caps:
        return False
    if set(when.get("notCaps", ())) & caps:
        return False
    return "minKernel" not in when or _kernel_at_least(kernel, when["minKernel"])


def default_profile(capabilities: list[str], arch: str | None = None,
                    kernel: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for RuntimeDefault, given the container's capabilities (its
    bounding set, as containerd reads it), the host architecture and the kernel release."""
    data = profile_data()
    arch = host_arch() if arch is None else arch
    kernel = platform.release() if kernel is None else kernel
    caps = set(capabilities)
    syscalls = []
    for rule in data["rules"]:
        if not _applies(rule.get("when", {}), caps, arch, kernel):
            continue
        syscalls.append({k: copy.deepcopy(v) for k, v in rule.items() if k != "when"})
    return {"defaultAction": data["defaultAction"], "defaultErrnoRet": data["defaultErrnoRet"],
            "architectures": list(data["architectures"].get(arch, [])), "syscalls": syscalls}
