"""The OCI runtime spec of a CRI container, built from small options (see ``oci.spec``).

Each ``with_*`` function takes the facts it needs as arguments and returns an option; none does I/O,
so every decision (which args run, which user, which mounts, which capabilities) is unit-tested on
its own. The few facts that need the host (device nodes, mountinfo, a Localhost seccomp file) are
read by ``oci/hostfacts.py`` and passed in; the image's ``/etc/passwd`` and
``/etc/group`` are read by ``oci.imagefiles`` (confined to the image, off the event loop).

The rules follow what kubelet expects and containerd's CRI plugin does
(internal/cri/server/container_create_linux.go, internal/cri/opts/spec_linux*.go).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from criproxy import errors
from criproxy import labels as lb
from criproxy.oci.spec import DEFAULT_CAPS, Option, Spec, merge_env
from criproxy.protos import cri

# Capability names by bit number (linux/capability.h), for "ALL" = every capability the host has.
CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
PROPAGATION = {cri.PROPAGATION_PRIVATE: "rprivate", cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
               cri.PROPAGATION_BIDIRECTIONAL: "rshared"}


# ---- process --------------------------------------------------------------------------------------

def process_args(config: cri.ContainerConfig, image_config: dict[str, Any]) -> list[str]:
    """Entrypoint/cmd override rules (Docker's, as kubelet documents them for command/args).

    command replaces the image entrypoint and drops the image cmd; args alone replace the image cmd.
    """
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = list(image_config.get("Cmd") or [])
        entrypoint = list(image_config.get("Entrypoint") or [])
        if entrypoint != [""]:
            command = entrypoint
    if not command and not args:
        raise errors.InvalidArgument("no command specified: the container config and the image give none")
    return command + args


def with_process(args: list[str], cwd: str, tty: bool) -> Option:
    def opt(spec: Spec) -> None:
        proc = spec["process"]
        proc["args"], proc["cwd"], proc["terminal"] = args, cwd or "/", tty
        if tty:
            proc["env"] = merge_env(proc["env"], ["TERM=xterm"])
    return opt


def config_env(config: cri.ContainerConfig) -> list[str]:
    """KEY=value entries (``value`` is declared bytes in our proto; the wire form is the same)."""
    out = []
    for kv in config.envs:
        value: Any = kv.value
        out.append(f"{kv.key}={value.decode(errors='replace') if isinstance(value, bytes) else value}")
    return out


# ---- user ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and not line.startswith("#"):
            try:
                out.append(PasswdEntry(parts[0], int(parts[2]), int(parts[3])))
            except ValueError:
                continue
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
                out.append(GroupEntry(parts[0], int(parts[2]), members))
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class UserFiles:
    """The image's /etc/passwd and /etc/group (empty when the image has none), parsed once when made:
    ``oci.imagefiles`` makes it in a thread, so a large file is never parsed on the event loop."""

    passwd: str = ""
    group: str = ""
    users: list[PasswdEntry] = field(init=False, repr=False)
    groups: list[GroupEntry] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", parse_passwd(self.passwd))
        object.__setattr__(self, "groups", parse_group(self.group))


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)


def _user_by_uid(files: UserFiles, uid: int) -> PasswdEntry | None:
    return next((u for u in files.users if u.uid == uid), None)


def _lookup_group(files: UserFiles, group: str) -> int:
    if group.isdigit():
        return int(group)
    hit = next((g for g in files.groups if g.name == group), None)
    if hit is None:
        raise errors.InvalidArgument(f"group {group!r} not found in the image's /etc/group")
    return hit.gid


def _lookup_user(files: UserFiles, user: str) -> tuple[int, int, str]:
    """(uid, primary gid, name) of a user given by number or name."""
    if user.isdigit():
        uid = int(user)
        entry = _user_by_uid(files, uid)
        return uid, entry.gid if entry else 0, entry.name if entry else ""
    entry = next((u for u in files.users if u.name == user), None)
    if entry is None:
        raise errors.InvalidArgument(f"user {user!r} not found in the image's /etc/passwd")
    return entry.uid, entry.gid, entry.name


def resolve_identity(sc: cri.LinuxContainerSecurityContext, image_user: str, files: UserFiles) -> Identity:
    """uid/gid/groups from run_as_user | run_as_username | the image's USER, then run_as_group,
    then supplemental groups (from /etc/group unless the policy is Strict, then the pod's).

    A group without a user is refused, as containerd's CRI does: the image's USER would pick the
    user, and a group meant for the config's own user would silently land on someone else."""
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        raise errors.InvalidArgument("run_as_group is set without run_as_user or run_as_username")
    if sc.HasField("run_as_user"):
        uid, gid, name = _lookup_user(files, str(sc.run_as_user.value))
    elif sc.run_as_username:
        uid, gid, name = _lookup_user(files, sc.run_as_username)
    elif image_user:
        user, _, group = image_user.partition(":")
        uid, gid, name = _lookup_user(files, user or "0")
        if group:
            gid = _lookup_group(files, group)
    else:
        uid, gid, name = 0, 0, "root"
        entry = _user_by_uid(files, 0)
        name = entry.name if entry else "root"
    if sc.HasField("run_as_group"):
        gid = sc.run_as_group.value
    groups = [gid]
    if sc.supplemental_groups_policy != cri.Strict and name:
        groups += [g.gid for g in files.groups if name in g.members and g.name != name]
    groups += list(sc.supplemental_groups)
    return Identity(uid, gid, list(dict.fromkeys(groups)))


def with_identity(ident: Identity) -> Option:
    def opt(spec: Spec) -> None:
        spec["process"]["user"] = {"uid": ident.uid, "gid": ident.gid, "additionalGids": list(ident.groups)}
    return opt


# ---- mounts --------------------------------------------------------------------------------------

def check_recursive_read_only(m: cri.Mount, rro_supported: bool) -> None:
    """An rro mount must be read-only with private propagation (a shared or slave mount would let
    writable mounts arrive later), and needs runc and kernel support (``oci.rro``); checked before
    anything is made for the mount."""
    if not m.recursive_read_only:
        return
    if not m.readonly:
        raise errors.InvalidArgument(f"recursive read-only mount at {m.container_path} must also be readonly")
    if m.propagation != cri.PROPAGATION_PRIVATE:
        raise errors.InvalidArgument(f"recursive read-only mount at {m.container_path} must have private "
                                     "propagation")
    if not rro_supported:
        raise errors.InvalidArgument(f"recursive read-only mount at {m.container_path}: the runtime handler's "
                                     "runc or the kernel does not support recursive read-only mounts")


def cri_mount(m: cri.Mount, host_path: str, rro_supported: bool) -> dict[str, Any]:
    """A CRI bind mount as an OCI mount: rbind, propagation, ro/rw, recursive read-only."""
    check_recursive_read_only(m, rro_supported)
    opts = ["rbind", PROPAGATION.get(m.propagation, "rprivate")]
    if m.recursive_read_only:
        opts.append("rro")
    opts.append("ro" if m.readonly else "rw")
    return {"destination": m.container_path, "type": "bind", "source": host_path, "options": opts}


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def with_container_mounts(mounts: list[dict[str, Any]]) -> Option:
    """Add the CRI mounts, replacing defaults at the same place; parents before children."""
    def opt(spec: Spec) -> None:
        dests = {m["destination"] for m in mounts}
        kept = [m for m in spec["mounts"] if m["destination"] not in dests]
        spec["mounts"] = kept + sorted(mounts, key=lambda m: _depth(m["destination"]))
        props = {o for m in mounts for o in m["options"]}
        if "rshared" in props:
            spec["linux"]["rootfsPropagation"] = "rshared"
        elif "rslave" in props:
            spec["linux"]["rootfsPropagation"] = "rslave"
    return opt


def pod_file_mounts(files: dict[str, str | None], taken: set[str], readonly_rootfs: bool) -> list[dict[str, Any]]:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm from the sandbox, unless the CRI
    config mounts something there itself (kubelet does that for /etc/hosts in some pods)."""
    out = []
    for dest, src in files.items():
        if not src or dest in taken:
            continue
        ro = readonly_rootfs and dest != "/dev/shm"
        out.append({"destination": dest, "type": "bind", "source": src,
                    "options": ["rbind", "rprivate", "ro" if ro else "rw"]})
    return out


# ---- namespaces -----------------------------------------------------------------------------------

def with_pod_namespaces(opts: cri.NamespaceOption, sandbox_pid: int, target_pid: int = 0) -> Option:
    """Join the pause process's network/IPC/UTS namespaces; PID per NamespaceOption."""
    def opt(spec: Spec) -> None:
        nss = [n for n in spec["linux"]["namespaces"] if n["type"] in ("mount", "cgroup", "user")]
        if opts.network != cri.NODE:
            nss += [{"type": "network", "path": f"/proc/{sandbox_pid}/ns/net"},
                    {"type": "uts", "path": f"/proc/{sandbox_pid}/ns/uts"}]
        if opts.ipc != cri.NODE:
            nss.append({"type": "ipc", "path": f"/proc/{sandbox_pid}/ns/ipc"})
        if opts.pid == cri.POD:
            nss.append({"type": "pid", "path": f"/proc/{sandbox_pid}/ns/pid"})
        elif opts.pid == cri.CONTAINER:
            nss.append({"type": "pid"})
        elif opts.pid == cri.TARGET:
            if not target_pid:
                raise errors.InvalidArgument(f"PID namespace target {opts.target_id!r} is not running")
            nss.append({"type": "pid", "path": f"/proc/{target_pid}/ns/pid"})
        spec["linux"]["namespaces"] = nss
    return opt


# ---- security -------------------------------------------------------------------------------------

def cap_name(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def capability_set(caps: cri.Capability, all_caps: list[str]) -> list[str]:
    """Default caps with add/drop applied; ALL in add means every host cap, ALL in drop means none,
    and the individual names still apply on top (add ALL, drop CHOWN = all but CHOWN)."""
    add = [cap_name(c) for c in caps.add_capabilities]
    drop = [cap_name(c) for c in caps.drop_capabilities]
    current = list(DEFAULT_CAPS)
    if "CAP_ALL" in add:
        current = list(all_caps)
    if "CAP_ALL" in drop:
        current = []
    for c in add:
        if c != "CAP_ALL" and c not in current:
            current.append(c)
    return [c for c in current if c not in drop]


def with_capabilities(effective: list[str], ambient: list[str]) -> Option:
    def opt(spec: Spec) -> None:
        capset: dict[str, list[str]] = {k: list(effective) for k in ("bounding", "effective", "permitted")}
        if ambient:
            capset["ambient"] = capset["inheritable"] = [a for a in ambient if a in effective]
        spec["process"]["capabilities"] = capset
    return opt


def with_privileged(all_caps: list[str], host_devices: list[dict[str, Any]]) -> Option:
    """Everything the host has: caps, devices, writable /sys and cgroupfs, no masks, no seccomp."""
    def opt(spec: Spec) -> None:
        spec["process"]["capabilities"] = {k: list(all_caps) for k in ("bounding", "effective", "permitted")}
        lin = spec["linux"]
        lin["maskedPaths"], lin["readonlyPaths"] = [], []
        lin.pop("seccomp", None)
        lin["devices"] = list(host_devices)
        lin["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["type"] in ("sysfs", "cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    return opt


def with_paths(masked: list[str], readonly: list[str]) -> Option:
    """Exactly the masked/readonly paths the CRI config names, none when it names none.

    kubelet sends its default lists for procMount Default and empty lists for Unmasked; proto3 cannot
    tell an empty list from an absent one, so empty must mean none (as in containerd's CRI) or
    Unmasked could never work. The default spec's lists stay on the pause container only.
    """
    def opt(spec: Spec) -> None:
        spec["linux"]["maskedPaths"] = list(masked)
        spec["linux"]["readonlyPaths"] = list(readonly)
    return opt


def with_cgroup_namespace(unified: bool) -> Option:
    """A container's own cgroup namespace on a cgroup v2 (unified) host, so /sys/fs/cgroup shows its
    own cgroup as the root; none on v1/hybrid hosts (as containerd's CRI, for compatibility).
    Privileged containers never get one (``with_privileged`` comes after and leaves it out)."""
    def opt(spec: Spec) -> None:
        nss = [n for n in spec["linux"]["namespaces"] if n["type"] != "cgroup"]
        if unified:
            nss.append({"type": "cgroup"})
        spec["linux"]["namespaces"] = nss
    return opt


def with_rootfs_readonly(readonly: bool) -> Option:
    def opt(spec: Spec) -> None:
        spec["root"]["readonly"] = readonly
    return opt


def with_no_new_privs(value: bool) -> Option:
    def opt(spec: Spec) -> None:
        spec["process"]["noNewPrivileges"] = value
    return opt


def seccomp_choice(sc: cri.LinuxContainerSecurityContext) -> tuple[str, str]:
    """("runtime/default" | "unconfined" | "localhost", path) from the typed field or the legacy string."""
    if sc.HasField("seccomp"):
        kind = sc.seccomp.profile_type
        if kind == cri.SecurityProfile.RuntimeDefault:
            return "runtime/default", ""
        if kind == cri.SecurityProfile.Localhost:
            return "localhost", sc.seccomp.localhost_ref
        if kind == cri.SecurityProfile.Unconfined:
            return "unconfined", ""
        # A type this runtime does not know must not silently mean "no filter" (as containerd).
        raise errors.InvalidArgument(f"unknown seccomp profile type {kind}")
    legacy = sc.seccomp_profile_path
    if legacy in ("runtime/default", "docker/default"):
        return "runtime/default", ""
    if legacy.startswith("localhost/"):
        return "localhost", legacy[len("localhost/"):]
    if legacy in ("", "unconfined"):
        return "unconfined", ""
    raise errors.InvalidArgument(f"unsupported seccomp profile {legacy!r}")


def with_seccomp(profile: dict[str, Any] | None) -> Option:
    def opt(spec: Spec) -> None:
        if profile is not None:
            spec["linux"]["seccomp"] = profile
    return opt


# ---- resources and devices ------------------------------------------------------------------------

def linux_resources(r: cri.LinuxContainerResources, swap_supported: bool = True,
                    hugetlb_supported: bool = True) -> dict[str, Any]:
    """CRI LinuxContainerResources as OCI ``linux.resources`` (zero means "not set")."""
    out: dict[str, Any] = {}
    cpu = {k: v for k, v in (("shares", r.cpu_shares), ("quota", r.cpu_quota), ("period", r.cpu_period),
                             ("cpus", r.cpuset_cpus), ("mems", r.cpuset_mems)) if v}
    if cpu:
        out["cpu"] = cpu
    mem: dict[str, int] = {}
    if r.memory_limit_in_bytes:
        mem["limit"] = r.memory_limit_in_bytes
    if swap_supported and (r.memory_swap_limit_in_bytes or r.memory_limit_in_bytes):
        # No swap limit of its own: swap+memory = memory, so a limited container does not swap
        # (containerd's CRI does the same where the swap controller exists).
        mem["swap"] = r.memory_swap_limit_in_bytes or r.memory_limit_in_bytes
    if mem:
        out["memory"] = mem
    if r.hugepage_limits and hugetlb_supported:
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit} for h in r.hugepage_limits]
    if r.unified:
        out["unified"] = dict(r.unified)
    return out


def with_resources(r: cri.LinuxContainerResources, oom_score_adj: int | None, swap_supported: bool = True,
                   hugetlb_supported: bool = True) -> Option:
    """``oom_score_adj`` None: the config sent no resources, so none is set (the runtime's own is
    inherited), as containerd's CRI does."""
    def opt(spec: Spec) -> None:
        spec["linux"]["resources"].update(linux_resources(r, swap_supported, hugetlb_supported))
        if oom_score_adj is not None:
            spec["process"]["oomScoreAdj"] = oom_score_adj
    return opt


def with_devices(devices: list[dict[str, Any]], rules: list[dict[str, Any]]) -> Option:
    def opt(spec: Spec) -> None:
        spec["linux"].setdefault("devices", []).extend(devices)
        spec["linux"]["resources"]["devices"].extend(rules)
    return opt


def container_annotations(sandbox_id: str, config: cri.ContainerConfig, sandbox_config: cri.PodSandboxConfig,
                          image_name: str) -> dict[str, str]:
    """The io.kubernetes.cri.* annotations (the shim groups a pod's containers by sandbox-id)."""
    meta = sandbox_config.metadata
    return {
        lb.CONTAINER_TYPE: "container", lb.CONTAINER_NAME: config.metadata.name,
        lb.SANDBOX_ID_ANNOTATION: sandbox_id, lb.SANDBOX_NAME: meta.name,
        lb.SANDBOX_NAMESPACE: meta.namespace, lb.SANDBOX_UID: meta.uid, lb.IMAGE_NAME: image_name,
    }
