"""Host facts a container spec depends on, read from this machine (/proc, /sys, /dev, the mount
table, a Localhost seccomp file); the spec options themselves are pure (``oci/container.py``)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.hostfile import HostFileError, read_regular
from criproxy.oci import seccomp
from criproxy.oci.container import CAP_NAMES, seccomp_choice
from criproxy.protos import cri


def cgroup_unified() -> bool:
    """cgroup v2 alone mounted at /sys/fs/cgroup (a hybrid host has v2 only under .../unified)."""
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def host_capabilities() -> list[str]:
    """Every capability in this process's bounding set (what "ALL" and privileged mean here)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [n for i, n in enumerate(CAP_NAMES) if mask >> i & 1]
    except OSError:
        pass
    return list(CAP_NAMES)


def device_entry(host_path: str, container_path: str, permissions: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(linux.devices entry, device cgroup rule) for one host device node."""
    st = os.stat(host_path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise errors.InvalidArgument(f"{host_path} is not a device node")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": container_path, "type": kind, "major": major, "minor": minor,
           "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions or "rwm"}
    return dev, rule


MAX_DEVICE_DIR_ENTRIES = 4096   # a device directory is /dev/dri-sized; "/" would walk the host


def cri_devices(devices: Iterable[cri.Device]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Devices and cgroup rules for CRI Device entries; a directory adds every device under it."""
    devs, rules = [], []
    for d in devices:
        if not os.path.exists(d.host_path):
            raise errors.InvalidArgument(f"device {d.host_path} does not exist on the host")
        if os.path.isdir(d.host_path):
            seen = 0
            for root, _dirs, files in os.walk(d.host_path):
                seen += 1 + len(files)
                if seen > MAX_DEVICE_DIR_ENTRIES:
                    raise errors.InvalidArgument(
                        f"device directory {d.host_path} holds more than {MAX_DEVICE_DIR_ENTRIES} entries")
                for f in files:
                    hp = os.path.join(root, f)
                    cp = os.path.join(d.container_path, os.path.relpath(hp, d.host_path))
                    try:
                        dev, rule = device_entry(hp, cp, d.permissions)
                    except errors.InvalidArgument:
                        continue
                    devs.append(dev)
                    rules.append(rule)
            continue
        dev, rule = device_entry(d.host_path, d.container_path, d.permissions)
        devs.append(dev)
        rules.append(rule)
    return devs, rules


_SKIP_DEV = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/.udev", "/dev/console")


def host_devices() -> list[dict[str, Any]]:
    """Every device node under /dev, for privileged containers; symlinks are not devices (runc's
    and containerd's host-device list skips them too)."""
    out = []
    for root, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in _SKIP_DEV]
        for f in files:
            path = os.path.join(root, f)
            if path in _SKIP_DEV or os.path.islink(path):   # /dev/stdin -> /proc/self/fd/0 stays a link
                continue
            try:
                out.append(device_entry(path, path, "rwm")[0])
            except (OSError, errors.InvalidArgument):
                continue
    return out


def prepare_host_path(m: cri.Mount) -> str:
    """Resolve symlinks in a mount's host path and create it as a directory when missing, as
    containerd does for kubelet (which has already created files it needs as files)."""
    path = m.host_path
    if not m.container_path:
        raise errors.InvalidArgument(f"mount of {path} has no container path")
    if not path:
        raise errors.InvalidArgument(f"mount at {m.container_path} has no host path")
    if not os.path.isabs(path) or "\0" in path:      # a relative path would be created under our cwd
        raise errors.InvalidArgument(f"mount host path {path[:200]!r} must be an absolute path")
    if not os.path.exists(path):
        os.makedirs(path, mode=0o755, exist_ok=True)
    return os.path.realpath(path)


def mount_propagation_of(path: str) -> set[str]:
    """Optional fields (shared:N, master:N) of the mount containing ``path``, from mountinfo."""
    best, best_tags = "", set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                sep = fields.index("-")
                best, best_tags = mp, {t.split(":")[0] for t in fields[6:sep]}
    return best_tags


def check_propagation(m: cri.Mount, host_path: str) -> None:
    """rshared needs a shared host mount, rslave a shared or slave one (or the kernel ignores it)."""
    if m.propagation == cri.PROPAGATION_PRIVATE:
        return
    tags = mount_propagation_of(host_path)
    if m.propagation == cri.PROPAGATION_BIDIRECTIONAL and "shared" not in tags:
        raise errors.InvalidArgument(f"path {host_path} is mounted on a mount that is not shared "
                                     "(bidirectional propagation needs a shared mount)")
    if m.propagation == cri.PROPAGATION_HOST_TO_CONTAINER and not tags & {"shared", "master"}:
        raise errors.InvalidArgument(f"path {host_path} is mounted on a mount that is neither shared nor "
                                     "slave (host-to-container propagation needs one)")


MAX_SECCOMP_PROFILE = 10 << 20   # bytes; real profiles are tens of KiB


def load_localhost_seccomp(path: str) -> dict[str, Any]:
    """The operator's profile file: a regular file (a FIFO or device named here must not hang or
    flood the reader), at most MAX_SECCOMP_PROFILE bytes, holding a JSON object."""
    if not os.path.isabs(path):
        raise errors.InvalidArgument(f"seccomp Localhost profile path {path!r} must be absolute")
    try:
        data = read_regular(path, MAX_SECCOMP_PROFILE)
    except HostFileError as e:
        raise errors.InvalidArgument(f"seccomp profile {path} is {e}") from None
    except OSError as e:
        raise errors.InvalidArgument(f"cannot read seccomp profile {path}: {e.strerror}") from None
    try:
        profile = json.loads(data)
    except ValueError as e:
        raise errors.InvalidArgument(f"seccomp profile {path} is not valid JSON: {e}") from None
    if not isinstance(profile, dict):
        raise errors.InvalidArgument(f"seccomp profile {path} is not a JSON object")
    return profile


def seccomp_profile(sc: cri.LinuxContainerSecurityContext, caps: list[str]) -> dict[str, Any] | None:
    kind, path = seccomp_choice(sc)
    if kind == "runtime/default":
        return seccomp.default_profile(caps)
    if kind == "localhost":
        return load_localhost_seccomp(path)
    return None


def swap_supported() -> bool:
    """cgroup v1 needs swap accounting (memsw files) for a swap limit; v2 has memory.swap.max."""
    return (Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
            or Path("/sys/fs/cgroup/cgroup.controllers").exists())


def hugetlb_supported() -> bool:
    """Whether the hugetlb controller exists: kubelet sends hugepage limits (often 0) for every page
    size, and runc fails on them without the controller (containerd tolerates its absence too)."""
    if Path("/sys/fs/cgroup/hugetlb").is_dir():
        return True
    try:
        return "hugetlb" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return False
