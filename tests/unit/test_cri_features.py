"""Pure parts of the CRI v1 feature additions: the rro probe's reading of runc's features and the
checks of an rro mount where support is missing; the run_as_group check; CDI spec files, names,
precedence and how their edits merge into a spec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from criproxy import errors
from criproxy.images import imagevolume
from criproxy.oci import cdi, rro
from criproxy.oci import container as oc
from criproxy.oci.spec import build_spec, default_spec
from criproxy.protos import cri


def test_runc_features_parse() -> None:
    assert rro.runc_features_support_rro({"mountOptions": ["rbind", "rro", "ro"]})
    assert not rro.runc_features_support_rro({"mountOptions": ["rbind", "ro"]})
    assert not rro.runc_features_support_rro({})
    assert not rro.runc_features_support_rro({"mountOptions": "rro"})


async def test_missing_runc_binary_means_unsupported() -> None:
    assert await rro.runc_supports_rro("/nonexistent/runc") is False
    assert await rro.runc_supports_rro("false") is False        # exits 1: no features


async def test_probe_shares_one_answer_per_binary() -> None:
    got = await rro.probe({"a": "/nonexistent/runc", "b": "/nonexistent/runc"})
    assert got == {"a": False, "b": False}


def test_rro_mount_where_unsupported_is_refused() -> None:
    m = cri.Mount(container_path="/d", host_path="/h", readonly=True, recursive_read_only=True)
    assert oc.cri_mount(m, "/h", True)["options"] == ["rbind", "rprivate", "rro", "ro"]
    with pytest.raises(errors.InvalidArgument, match="does not support"):
        oc.cri_mount(m, "/h", False)


@pytest.mark.parametrize("mount", [
    cri.Mount(container_path="/d", host_path="/h", recursive_read_only=True),
    cri.Mount(container_path="/d", host_path="/h", readonly=True, recursive_read_only=True,
              propagation=cri.PROPAGATION_BIDIRECTIONAL),
])
def test_rro_mount_needs_readonly_and_private(mount: cri.Mount) -> None:
    with pytest.raises(errors.InvalidArgument, match="recursive read-only"):
        oc.check_recursive_read_only(mount, True)


def test_run_as_group_needs_a_user() -> None:
    sc = cri.LinuxContainerSecurityContext(run_as_group=cri.Int64Value(value=5))
    with pytest.raises(errors.InvalidArgument, match="run_as_group"):
        oc.resolve_identity(sc, "1000", oc.UserFiles())
    sc.run_as_user.value = 7
    assert oc.resolve_identity(sc, "", oc.UserFiles()).gid == 5


# ---- CDI ------------------------------------------------------------------------------------------

def _spec(kind: str, devices: dict[str, dict[str, object]], **top: object) -> str:
    return json.dumps({"cdiVersion": "0.6.0", "kind": kind,
                       "devices": [{"name": n, "containerEdits": e} for n, e in devices.items()], **top})


def test_cdi_requested_names() -> None:
    got = cdi.requested(["a.com/x=1"], {"cdi.k8s.io/z": "b.com/y=2, a.com/x=1", "other": "c.com/q=3",
                                        "cdi.k8s.io/a": "c.com/q=3"})
    assert got == ["a.com/x=1", "c.com/q=3", "b.com/y=2"]
    for bad in (["nokind"], ["a.com/x="], ["a.com=x"]):
        with pytest.raises(errors.InvalidArgument, match="CDI device name"):
            cdi.requested(bad, {})
    with pytest.raises(errors.InvalidArgument, match="annotation key"):
        cdi.requested([], {"cdi.k8s.io/bad key": "a.com/x=1"})


def test_cdi_later_dir_wins_and_same_dir_conflicts(tmp_path: Path) -> None:
    first, second = tmp_path / "etc", tmp_path / "run"
    first.mkdir()
    second.mkdir()
    (first / "a.json").write_text(_spec("a.com/x", {"d": {"env": ["WHO=etc"]}, "e": {"env": ["E=1"]}}))
    (second / "a.yaml").write_text("cdiVersion: 0.5.0\nkind: a.com/x\ndevices:\n"
                                   "  - name: d\n    containerEdits:\n      env: [WHO=run]\n")
    (second / "b.json").write_text(_spec("b.com/y", {"c": {"env": ["C=1"]}}))
    (second / "c.json").write_text(_spec("b.com/y", {"c": {"env": ["C=2"]}}))
    (second / "bad.yaml").write_text("cdiVersion: 9.9.9\nkind: z.com/z\ndevices: []\n")
    reg = cdi.load([first, second, tmp_path / "missing"])
    assert reg.devices["a.com/x=d"].edits["env"] == ["WHO=run"]
    assert reg.devices["a.com/x=e"].edits["env"] == ["E=1"]
    assert "b.com/y=c" not in reg.devices                 # defined twice in one directory
    assert any("cdiVersion" in p for p in reg.problems) and any("both" in p for p in reg.problems)
    with pytest.raises(errors.InvalidArgument, match=r"b\.com/y=c"):
        cdi.resolve(reg, ["a.com/x=d", "b.com/y=c"])


@pytest.mark.parametrize("doc", [
    {"cdiVersion": "0.6.0", "kind": "a.com/x", "devices": []},
    {"cdiVersion": "0.6.0", "kind": "nokind", "devices": [{"name": "d"}]},
    {"cdiVersion": "0.6.0", "kind": "a.com/x", "devices": [{"name": "d", "containerEdits": {"env": ["NOEQ"]}}]},
    {"cdiVersion": "0.6.0", "kind": "a.com/x", "devices": [{"name": "d", "containerEdits": {
        "hooks": [{"hookName": "bogus", "path": "/x"}]}}]},
    {"cdiVersion": "0.6.0", "kind": "a.com/x", "devices": [{"name": "d", "containerEdits": {
        "deviceNodes": [{"path": "relative"}]}}]},
])
def test_cdi_bad_spec_files(doc: dict[str, object]) -> None:
    with pytest.raises(cdi.SpecError):
        cdi.devices_of(doc, "f.json")


def test_cdi_edits_merge_into_the_spec() -> None:
    spec_edits = {"env": ["S=1", "PATH=/cdi"]}
    dev = cdi.Device("a.com/x", "d", {
        "env": ["D=1"], "additionalGids": [7],
        "deviceNodes": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600,
                         "permissions": "rw"}],
        "mounts": [{"hostPath": "/h", "containerPath": "/a/b", "options": ["rbind"]},
                   {"hostPath": "/h2", "containerPath": "/a", "type": "bind", "options": ["rbind", "ro"]}],
        "hooks": [{"hookName": "createRuntime", "path": "/bin/true", "args": ["true"]}]}, spec_edits, "f")
    spec = build_spec(default_spec(), oc.with_identity(oc.Identity(0, 0, [0])),
                      cdi.with_cdi(cdi.edits_for([dev, dev])))
    env = spec["process"]["env"]
    assert "PATH=/cdi" in env and "S=1" in env and "D=1" in env
    assert spec["linux"]["devices"] == [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in spec["linux"]["resources"]["devices"]
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/a") == 1 and dests.index("/a") < dests.index("/a/b")
    assert spec["hooks"]["createRuntime"][0]["path"] == "/bin/true"
    assert spec["process"]["user"]["additionalGids"] == [0, 7]


def test_cdi_device_node_facts_come_from_the_host() -> None:
    st = os.stat("/dev/null")
    dev, rule = cdi._device_node({"path": "/dev/n", "hostPath": "/dev/null"})
    assert (dev["type"], dev["major"], dev["minor"]) == ("c", os.major(st.st_rdev), os.minor(st.st_rdev))
    assert rule is not None and rule["access"] == "rwm"
    with pytest.raises(errors.InvalidArgument, match="does not match"):
        cdi._device_node({"path": "/dev/n", "hostPath": "/dev/null", "type": "b"})
    with pytest.raises(errors.InvalidArgument, match="not a device"):
        cdi._device_node({"path": "/dev/n", "hostPath": "/etc/hostname"})


# ---- image volume sub paths -------------------------------------------------------------------------

def test_image_sub_path_confined(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "f").write_text("x")
    (root / "rel").symlink_to("data/sub")
    (root / "data" / "up").symlink_to("../data")
    (root / "abs").symlink_to("/data")
    (root / "out").symlink_to("../../..")
    ok = {"data": "data", "data/sub/": "data/sub", "rel": "data/sub", "data/up/sub": "data/sub",
          "./data/../data": "data"}
    for sub, want in ok.items():
        assert imagevolume.resolve_sub_path(str(root), sub) == str(root / want), sub
    for sub, words in (("missing", "does not exist"), ("..", "escapes"), ("data/../..", "escapes"),
                       ("abs", "escapes"), ("out", "escapes"), ("f", "not a directory"), ("f/x", "does not exist")):
        with pytest.raises(errors.InvalidArgument, match=words):
            imagevolume.resolve_sub_path(str(root), sub)


def test_image_mount_settings_checked() -> None:
    good = cri.Mount(container_path="/v", readonly=True, image=cri.ImageSpec(image="x"))
    imagevolume.check_mount(good)
    for bad in (cri.Mount(container_path="/v", image=cri.ImageSpec(image="x")),
                cri.Mount(container_path="/v", readonly=True, host_path="/h", image=cri.ImageSpec(image="x")),
                cri.Mount(container_path="/v", readonly=True, image_sub_path="/abs", image=cri.ImageSpec(image="x"))):
        with pytest.raises(errors.InvalidArgument, match="ImageVolumeMountFailed"):
            imagevolume.check_mount(bad)


# ---- base runtime spec ------------------------------------------------------------------------------

def test_base_spec_load_and_start(tmp_path: Path) -> None:
    from criproxy.errors import StartupError
    from criproxy.oci import basespec

    good = tmp_path / "b.json"
    good.write_text(json.dumps({"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 9, "soft": 9}]},
                                "hooks": {"prestart": []}}))
    spec = basespec.start_spec(basespec.load(str(good)))
    assert spec["process"]["rlimits"][0]["hard"] == 9 and spec["hooks"] == {"prestart": []}
    assert spec["process"]["capabilities"] == default_spec()["process"]["capabilities"]   # kept from default
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert basespec.start_spec(None) == default_spec()
    for text, words in (("{", "not valid JSON"), ("[]", "not an OCI runtime spec"),
                        ('{"process": []}', "not an OCI runtime spec")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(StartupError, match=words):
            basespec.load(str(tmp_path / "bad.json"))
    with pytest.raises(StartupError, match="No such file"):
        basespec.load(str(tmp_path / "missing.json"))
