"""AppArmor: which profile a security context asks for, what a container gets, the kernel's list of
loaded profiles, and the default profile's text (containerd's rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from criproxy import errors
from criproxy.app import App
from criproxy.config import load
from criproxy.container.spec import container_spec
from criproxy.containerd import Containerd
from criproxy.oci import apparmor as aa
from criproxy.oci import container as oc
from criproxy.protos import cri
from criproxy.state.image import LocalImage
from criproxy.state.sandbox import SandboxRecord

LOCALHOST, DEFAULT, UNCONFINED = (cri.SecurityProfile.Localhost, cri.SecurityProfile.RuntimeDefault,
                                  cri.SecurityProfile.Unconfined)


def ctx(field: tuple[int, str] | None = None, legacy: str = "", privileged: bool = False
        ) -> cri.LinuxContainerSecurityContext:
    sc = cri.LinuxContainerSecurityContext(apparmor_profile=legacy, privileged=privileged)
    if field is not None:
        sc.apparmor.CopyFrom(cri.SecurityProfile(profile_type=field[0], localhost_ref=field[1]))
    return sc


# ---- the request, as kubelets send it ---------------------------------------------------------------

@pytest.mark.parametrize(("sc", "expected"), [
    # what a kubelet sends for a Localhost profile: the field, and the string with its prefix
    (ctx((LOCALHOST, "k8s-deny"), "localhost/k8s-deny"), aa.Request("localhost", "k8s-deny")),
    # the prefix inside localhost_ref (the failure the VM showed) is dropped too
    (ctx((LOCALHOST, "localhost/k8s-deny")), aa.Request("localhost", "k8s-deny")),
    (ctx(legacy="localhost/k8s-deny"), aa.Request("localhost", "k8s-deny")),
    (ctx((DEFAULT, ""), "runtime/default"), aa.Request("runtime/default")),
    (ctx(legacy="runtime/default"), aa.Request("runtime/default")),
    (ctx((UNCONFINED, ""), "unconfined"), aa.Request("unconfined")),
    (ctx(legacy="unconfined"), aa.Request("unconfined")),
    (ctx(), aa.Request("unset")),
    # the typed field wins over the string when both are set
    (ctx((UNCONFINED, ""), "localhost/other"), aa.Request("unconfined")),
    (ctx((LOCALHOST, "new"), "localhost/old"), aa.Request("localhost", "new")),
    (ctx((DEFAULT, ""), "unconfined"), aa.Request("runtime/default")),
    # a profile name with a slash in it keeps everything after the first prefix
    (ctx((LOCALHOST, "localhost/localhost/x")), aa.Request("localhost", "localhost/x")),
])
def test_requested(sc: cri.LinuxContainerSecurityContext, expected: aa.Request) -> None:
    assert aa.requested(sc) == expected


@pytest.mark.parametrize("sc", [
    ctx((LOCALHOST, "")), ctx((LOCALHOST, "localhost/")), ctx(legacy="localhost/"),
    ctx(legacy="docker-default"), ctx(legacy="k8s-deny"),        # no prefix: not a CRI value
    ctx((DEFAULT, "k8s-deny")),                                   # a ref without the Localhost type
    ctx((7, "")), ctx((-1, "x")), ctx((7, "k8s-deny")),   # unknown types, with a ref too (fuzz found -1)
])
def test_bad_requests_are_invalid(sc: cri.LinuxContainerSecurityContext) -> None:
    with pytest.raises(errors.InvalidArgument):
        aa.requested(sc)


# ---- what the container gets ------------------------------------------------------------------------

@pytest.mark.parametrize(("req", "privileged", "expected"), [
    (aa.Request("unset"), False, aa.Plan("criproxy-default", default=True)),
    (aa.Request("runtime/default"), False, aa.Plan("criproxy-default", default=True)),
    (aa.Request("unset"), True, aa.Plan()),
    (aa.Request("runtime/default"), True, aa.Plan()),
    (aa.Request("unconfined"), False, aa.Plan()),
    (aa.Request("unconfined"), True, aa.Plan()),
    (aa.Request("localhost", "p"), False, aa.Plan("p")),
    (aa.Request("localhost", "p"), True, aa.Plan("p")),     # asked for by name: privileged or not
])
def test_plan_with_apparmor(req: aa.Request, privileged: bool, expected: aa.Plan) -> None:
    assert aa.plan(req, privileged, unsupported="") == expected


@pytest.mark.parametrize("req", [aa.Request("unset"), aa.Request("unconfined")])
def test_plan_without_apparmor_runs_unconfined(req: aa.Request) -> None:
    assert aa.plan(req, privileged=False, unsupported="no AppArmor") == aa.Plan()


@pytest.mark.parametrize(("req", "named"), [(aa.Request("localhost", "k8s-deny"), "'k8s-deny'"),
                                            (aa.Request("runtime/default"), "'runtime/default'")])
def test_plan_without_apparmor_refuses_a_profile(req: aa.Request, named: str) -> None:
    for privileged in (False, True):
        with pytest.raises(errors.InvalidArgument,
                           match=rf"{named} requested but AppArmor is not enabled on this host \(why\)"):
            aa.plan(req, privileged, unsupported="why")


def test_spec_carries_the_profile(tmp_path: Path) -> None:
    app = App(config=load(None, {}), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))
    pod = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid="u"))
    pod.linux.security_context.privileged = True
    sandbox = SandboxRecord(id="s" * 64, name="p_n_u_0", config=pod, runtime_handler="", created_at=0, pid=1)
    image = LocalImage(id="sha256:" + "c" * 64, target_digest="", target_media_type="", manifest_digest="",
                       config={"config": {"Cmd": ["/bin/sh"]}}, chain_id="", size=0)

    def process(privileged: bool, profile: str) -> dict[str, Any]:
        config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"), image=cri.ImageSpec(image="i"))
        config.linux.security_context.privileged = privileged
        spec = container_spec(app, "c" * 64, config, sandbox, image, oc.UserFiles(), apparmor_profile=profile)
        return dict(spec.spec["process"])
    assert process(False, "k8s-deny")["apparmorProfile"] == "k8s-deny"
    assert process(True, "k8s-deny")["apparmorProfile"] == "k8s-deny"
    assert "apparmorProfile" not in process(False, "")
    assert "apparmorProfile" not in process(True, "")


# ---- the kernel's list of loaded profiles ---------------------------------------------------------------

def test_is_loaded_matches_whole_names(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.write_text("nvidia_modprobe (enforce)\nnvidia_modprobe//kmod (enforce)\nlsb_release (complain)\n"
                        "/usr/bin/man (enforce)\nwith space (x) (enforce)\n")
    for name in ("nvidia_modprobe", "nvidia_modprobe//kmod", "lsb_release", "/usr/bin/man", "with space (x)"):
        assert aa.is_loaded(name, profiles), name
    for name in ("nvidia", "lsb_release (complain)", "man", "with space", "criproxy-default", ""):
        assert not aa.is_loaded(name, profiles), name


def test_is_loaded_reads_a_bounded_amount(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    with profiles.open("wb") as f:
        f.write(b"x" * (aa.LINE_MAX_BYTES * 3) + b" (enforce)\n")       # one overlong line: pieces of it
        f.write(b"p (enforce)\n")
    assert aa.is_loaded("p", profiles)
    assert not aa.is_loaded("x" * (aa.LINE_MAX_BYTES * 3), profiles)


def test_unreadable_profile_list_is_failed_precondition(tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="profile list"):
        aa.is_loaded("p", tmp_path / "missing")


# ---- the default profile ------------------------------------------------------------------------------

# containerd's cri-containerd.apparmor.d rules (contrib/apparmor/template.go), written out here so the
# test does not take its expectations from the template under test.
CONTAINERD_RULES = """
network,
capability,
file,
umount,
signal (receive) peer=unconfined,
signal (receive) peer=runc,
signal (receive) peer=crun,
signal (send,receive) peer=NAME,
deny @{PROC}/* w,
deny @{PROC}/{[^1-9/],[^1-9/][^0-9/],[^1-9s/][^0-9y/][^0-9s/],[^1-9/][^0-9/][^0-9/][^0-9/]*}/** w,
deny @{PROC}/sys/[^k]** w,
deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
deny @{PROC}/sysrq-trigger rwklx,
deny @{PROC}/kcore rwklx,
deny mount,
deny /sys/[^f]*/** wklx,
deny /sys/f[^s]*/** wklx,
deny /sys/fs/[^c]*/** wklx,
deny /sys/fs/c[^g]*/** wklx,
deny /sys/fs/cg[^r]*/** wklx,
deny /sys/firmware/** rwklx,
deny /sys/devices/virtual/powercap/** rwklx,
deny /sys/kernel/security/** rwklx,
ptrace (trace,tracedby,read,readby) peer=NAME,
"""


def rules(text: str) -> list[str]:
    """The profile's rule lines (comments and blank lines dropped; includes kept)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and (not line.startswith("#") or line.startswith("#include")):
            out.append(line.split(" #", 1)[0].strip())
    return out


def test_default_profile_has_containerds_rules_and_no_others(tmp_path: Path) -> None:
    for rel in ("abi/3.0", "tunables/global", "abstractions/base"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    text = aa.render_default("my-default", ["containerd-prof", "/usr/bin/containerd"], tmp_path)
    got = rules(text)
    assert got[:3] == ["abi <abi/3.0>,", "#include <tunables/global>",
                       "profile my-default flags=(attach_disconnected,mediate_deleted) {"]
    assert got[3] == "#include <abstractions/base>" and got[-1] == "}"
    expected = [r.replace("NAME", "my-default") for r in CONTAINERD_RULES.split("\n") if r]
    daemons = ["signal (receive) peer=containerd-prof,", "signal (receive) peer=/usr/bin/containerd,"]
    assert sorted(got[4:-1]) == sorted(expected + daemons)


def test_default_profile_without_the_hosts_policy_files(tmp_path: Path) -> None:
    got = rules(aa.render_default("d", [], tmp_path))
    assert got[:2] == ["@{PROC}=/proc/", "profile d flags=(attach_disconnected,mediate_deleted) {"]
    assert not any(r.startswith(("abi", "#include")) for r in got)
    assert "signal (send,receive) peer=d," in got


def test_daemon_labels_are_plain_names() -> None:
    # this test process runs unconfined (or without AppArmor): nothing beyond the unconfined rule
    assert aa.daemon_labels(None) == []
