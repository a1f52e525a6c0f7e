"""Container spec options: each decision of CreateContainer's OCI spec, tested on its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from criproxy import errors
from criproxy.oci import container as oc
from criproxy.oci import hostfacts
from criproxy.oci.spec import DEFAULT_CAPS, build_spec, default_spec
from criproxy.protos import cri

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nalice:x:1000:1001::/home/a:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:33:\nusers:x:1001:\nwheel:x:10:alice,bob\naudio:x:29:alice\nalice:x:2000:alice\n"
FILES = oc.UserFiles(PASSWD, GROUP)


@pytest.mark.parametrize(("command", "args", "image", "expected"), [
    ([], [], {"Entrypoint": ["/ep"], "Cmd": ["c1"]}, ["/ep", "c1"]),
    (["/cmd"], [], {"Entrypoint": ["/ep"], "Cmd": ["c1"]}, ["/cmd"]),
    (["/cmd"], ["a"], {"Entrypoint": ["/ep"], "Cmd": ["c1"]}, ["/cmd", "a"]),
    ([], ["a", "b"], {"Entrypoint": ["/ep"], "Cmd": ["c1"]}, ["/ep", "a", "b"]),
    ([], [], {"Cmd": ["sh"]}, ["sh"]),
    ([], ["x"], {"Entrypoint": [""], "Cmd": ["c"]}, ["x"]),
])
def test_process_args(command: list[str], args: list[str], image: dict[str, Any], expected: list[str]) -> None:
    assert oc.process_args(cri.ContainerConfig(command=command, args=args), image) == expected


def test_no_command_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument):
        oc.process_args(cri.ContainerConfig(), {})


def sc(**kw: Any) -> cri.LinuxContainerSecurityContext:
    return cri.LinuxContainerSecurityContext(**kw)


@pytest.mark.parametrize(("ctx", "image_user", "expected"), [
    (sc(), "", (0, 0, [0])),
    (sc(run_as_user=cri.Int64Value(value=1000)), "", (1000, 1001, [1001, 10, 29])),
    (sc(run_as_user=cri.Int64Value(value=4242)), "", (4242, 0, [0])),
    (sc(run_as_username="www"), "", (33, 33, [33])),
    (sc(), "alice", (1000, 1001, [1001, 10, 29])),
    (sc(), "33:wheel", (33, 10, [10])),
    (sc(), "1234:5678", (1234, 5678, [5678])),
    (sc(run_as_username="alice", run_as_group=cri.Int64Value(value=7),
        supplemental_groups=[500, 10]), "", (1000, 7, [7, 10, 29, 500])),
    (sc(run_as_username="alice", supplemental_groups=[500], supplemental_groups_policy=cri.Strict), "",
     (1000, 1001, [1001, 500])),
])
def test_identity(ctx: cri.LinuxContainerSecurityContext, image_user: str,
                  expected: tuple[int, int, list[int]]) -> None:
    ident = oc.resolve_identity(ctx, image_user, FILES)
    assert (ident.uid, ident.gid, ident.groups) == expected


@pytest.mark.parametrize(("ctx", "image_user"), [(sc(run_as_username="nobody"), ""), (sc(), "ghost"),
                                                  (sc(), "0:nogroup")])
def test_unknown_user_or_group_is_invalid(ctx: cri.LinuxContainerSecurityContext, image_user: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        oc.resolve_identity(ctx, image_user, FILES)


def test_capabilities_add_drop_all() -> None:
    all_caps = oc.CAP_NAMES[:5]
    assert oc.capability_set(cri.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["CHOWN"]),
                             all_caps) == [c for c in DEFAULT_CAPS if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN"]
    assert oc.capability_set(cri.Capability(drop_capabilities=["ALL"], add_capabilities=["CAP_KILL"]),
                             all_caps) == ["CAP_KILL"]
    assert oc.capability_set(cri.Capability(add_capabilities=["ALL"], drop_capabilities=["CHOWN"]),
                             all_caps) == all_caps[1:]


def test_capability_option_and_ambient() -> None:
    spec = build_spec(default_spec(), oc.with_capabilities(["CAP_KILL", "CAP_NET_RAW"], ["CAP_NET_RAW", "CAP_X"]))
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == ["CAP_KILL", "CAP_NET_RAW"] and caps["ambient"] == ["CAP_NET_RAW"]


def test_privileged_clears_confinement() -> None:
    spec = default_spec()
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO"}
    build_spec(spec, oc.with_privileged(["CAP_SYS_ADMIN"], [{"path": "/dev/null"}]))
    lin = spec["linux"]
    assert lin["maskedPaths"] == [] and lin["readonlyPaths"] == [] and "seccomp" not in lin
    assert lin["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sysfs = next(m for m in spec["mounts"] if m["type"] == "sysfs")
    assert "ro" not in sysfs["options"] and "rw" in sysfs["options"]


KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap"]


def test_masked_and_readonly_paths_exactly_as_sent() -> None:
    spec = build_spec(default_spec(), oc.with_paths(KUBELET_MASKED, ["/proc/sys"]))
    assert spec["linux"]["maskedPaths"] == KUBELET_MASKED and spec["linux"]["readonlyPaths"] == ["/proc/sys"]
    unmasked = build_spec(default_spec(), oc.with_paths([], []))     # procMount Unmasked
    assert unmasked["linux"]["maskedPaths"] == [] and unmasked["linux"]["readonlyPaths"] == []


def test_cgroup_namespace_only_on_unified_hosts() -> None:
    def types(spec: dict[str, Any]) -> list[str]:
        return sorted(n["type"] for n in spec["linux"]["namespaces"])
    v2 = build_spec(default_spec(), oc.with_cgroup_namespace(True))
    v1 = build_spec(default_spec(), oc.with_cgroup_namespace(False))
    assert types(v2) == sorted([*types(default_spec()), "cgroup"]) and types(v1) == types(default_spec())
    pod = build_spec(v2, oc.with_pod_namespaces(cri.NamespaceOption(pid=cri.CONTAINER), 42))
    assert "cgroup" in types(pod)


@pytest.mark.parametrize(("prop", "ro", "expected"), [
    (cri.PROPAGATION_PRIVATE, False, ["rbind", "rprivate", "rw"]),
    (cri.PROPAGATION_HOST_TO_CONTAINER, True, ["rbind", "rslave", "ro"]),
    (cri.PROPAGATION_BIDIRECTIONAL, False, ["rbind", "rshared", "rw"]),
])
def test_cri_mount_options(prop: int, ro: bool, expected: list[str]) -> None:
    m = cri.Mount(container_path="/data", host_path="/h", readonly=ro, propagation=prop)  # type: ignore[arg-type]
    assert oc.cri_mount(m, "/h", True)["options"] == expected


def test_recursive_readonly() -> None:
    m = cri.Mount(container_path="/d", host_path="/h", readonly=True, recursive_read_only=True)
    assert oc.cri_mount(m, "/h", True)["options"] == ["rbind", "rprivate", "rro", "ro"]
    with pytest.raises(errors.InvalidArgument):
        oc.cri_mount(cri.Mount(container_path="/d", host_path="/h", recursive_read_only=True), "/h", True)


def test_container_mounts_replace_defaults_sort_and_set_rootfs_propagation() -> None:
    mounts = [{"destination": "/a/b", "type": "bind", "source": "/x", "options": ["rbind", "rslave", "rw"]},
              {"destination": "/a", "type": "bind", "source": "/y", "options": ["rbind", "rprivate", "rw"]},
              {"destination": "/dev/shm", "type": "bind", "source": "/z", "options": ["rbind", "rprivate", "rw"]}]
    spec = build_spec(default_spec(), oc.with_container_mounts(mounts))
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1 and dests.index("/a") < dests.index("/a/b")
    assert spec["linux"]["rootfsPropagation"] == "rslave"


def test_pod_file_mounts_skip_taken_and_follow_readonly_rootfs() -> None:
    files = {"/etc/hosts": "/p/hosts", "/etc/hostname": None, "/etc/resolv.conf": "/p/r", "/dev/shm": "/s"}
    out = oc.pod_file_mounts(files, {"/etc/resolv.conf"}, readonly_rootfs=True)
    assert [(m["destination"], m["options"][-1]) for m in out] == [("/etc/hosts", "ro"), ("/dev/shm", "rw")]


@pytest.mark.parametrize(("opts", "expected"), [
    (cri.NamespaceOption(), {"network": "/proc/7/ns/net", "uts": "/proc/7/ns/uts", "ipc": "/proc/7/ns/ipc",
                             "pid": "/proc/7/ns/pid", "mount": None}),
    (cri.NamespaceOption(pid=cri.CONTAINER), {"network": "/proc/7/ns/net", "uts": "/proc/7/ns/uts",
                                              "ipc": "/proc/7/ns/ipc", "pid": None, "mount": None}),
    (cri.NamespaceOption(network=cri.NODE, ipc=cri.NODE, pid=cri.NODE), {"mount": None}),
    (cri.NamespaceOption(pid=cri.TARGET, target_id="t"), {"network": "/proc/7/ns/net", "uts": "/proc/7/ns/uts",
                                                          "ipc": "/proc/7/ns/ipc", "pid": "/proc/9/ns/pid",
                                                          "mount": None}),
])
def test_pod_namespaces(opts: cri.NamespaceOption, expected: dict[str, str | None]) -> None:
    spec = build_spec(default_spec(), oc.with_pod_namespaces(opts, 7, target_pid=9))
    assert {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]} == expected


def test_target_namespace_needs_running_target() -> None:
    with pytest.raises(errors.InvalidArgument):
        build_spec(default_spec(), oc.with_pod_namespaces(cri.NamespaceOption(pid=cri.TARGET), 7, 0))


def test_resources() -> None:
    r = cri.LinuxContainerResources(cpu_shares=512, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=64 << 20,
                                    memory_swap_limit_in_bytes=64 << 20, cpuset_cpus="0",
                                    hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=0)],
                                    unified={"memory.high": "1"})
    out = oc.linux_resources(r)
    assert out["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}
    assert out["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert out["hugepageLimits"] == [{"pageSize": "2MB", "limit": 0}] and out["unified"] == {"memory.high": "1"}
    assert "swap" not in oc.linux_resources(r, swap_supported=False)["memory"]
    assert oc.linux_resources(cri.LinuxContainerResources()) == {}
    only_limit = cri.LinuxContainerResources(memory_limit_in_bytes=32 << 20)
    assert oc.linux_resources(only_limit)["memory"] == {"limit": 32 << 20, "swap": 32 << 20}   # no swapping
    assert oc.linux_resources(only_limit, swap_supported=False)["memory"] == {"limit": 32 << 20}
    spec = build_spec(default_spec(), oc.with_resources(r, 500))
    assert "oomScoreAdj" not in build_spec(default_spec(), oc.with_resources(r, None))["process"]
    assert spec["process"]["oomScoreAdj"] == 500 and spec["linux"]["resources"]["devices"]


@pytest.mark.parametrize(("ctx", "expected"), [
    (sc(), ("unconfined", "")),
    (sc(seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault)), ("runtime/default", "")),
    (sc(seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref="/p.json")),
     ("localhost", "/p.json")),
    (sc(seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined)), ("unconfined", "")),
    (sc(seccomp_profile_path="docker/default"), ("runtime/default", "")),
    (sc(seccomp_profile_path="localhost//x.json"), ("localhost", "/x.json")),
])
def test_seccomp_choice(ctx: cri.LinuxContainerSecurityContext, expected: tuple[str, str]) -> None:
    assert oc.seccomp_choice(ctx) == expected


@pytest.mark.parametrize("ctx", [
    sc(seccomp=cri.SecurityProfile(profile_type=7)),                 # a type this runtime does not know
    sc(seccomp=cri.SecurityProfile(profile_type=-1)),
    sc(seccomp_profile_path="docker-default-typo"),                  # not a CRI seccomp value
])
def test_unknown_seccomp_request_is_refused_not_unconfined(ctx: cri.LinuxContainerSecurityContext) -> None:
    with pytest.raises(errors.InvalidArgument):
        oc.seccomp_choice(ctx)


def test_localhost_seccomp_profile(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text('{"defaultAction": "SCMP_ACT_LOG"}')
    ctx = sc(seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(p)))
    assert hostfacts.seccomp_profile(ctx, []) == {"defaultAction": "SCMP_ACT_LOG"}
    with pytest.raises(errors.InvalidArgument):
        hostfacts.load_localhost_seccomp(str(tmp_path / "missing.json"))


def test_devices_from_host() -> None:
    devs, rules = hostfacts.cri_devices([cri.Device(container_path="/dev/mynull", host_path="/dev/null",
                                                    permissions="rw")])
    assert devs[0]["path"] == "/dev/mynull" and devs[0]["type"] == "c" and devs[0]["major"] == 1
    assert rules[0] == {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    with pytest.raises(errors.InvalidArgument):
        hostfacts.cri_devices([cri.Device(container_path="/x", host_path="/nonexistent/dev")])


def test_host_capabilities_names() -> None:
    caps = hostfacts.host_capabilities()
    assert "CAP_CHOWN" in caps and all(c.startswith("CAP_") for c in caps)


def test_missing_host_path_is_created(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir"
    assert hostfacts.prepare_host_path(cri.Mount(container_path="/d", host_path=str(target))) == str(target)
    assert target.is_dir()
    link = tmp_path / "link"
    os.symlink(target, link)
    assert hostfacts.prepare_host_path(cri.Mount(container_path="/d", host_path=str(link))) == str(target)


