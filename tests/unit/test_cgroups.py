"""cgroupsPath for pause and workload containers, against the parents a kubelet sends for each driver.

Expected strings are written from containerd's CRI rule (the parent's last element ends in ".slice":
``<that slice>:cri-containerd:<id>``; otherwise ``<parent>/<id>``) and the kubelet's parent formats
(docs/cgroups.md), not from criproxy's code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from criproxy import errors
from criproxy.app import App
from criproxy.config import load
from criproxy.container.spec import container_spec
from criproxy.containerd.client import Containerd
from criproxy.cri.runtime_config import runtime_config
from criproxy.images.local import LocalImage
from criproxy.oci import container as oc
from criproxy.oci.cgroups import cgroups_path, check_parent
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate.sandbox import container_runtime, systemd_cgroup
from criproxy.translate.sandbox_spec import SandboxFiles, pause_spec

UID = "8e7c3a52-1d0f-4b6e-9a41-3f2d5c6b7a80"
UID_ = UID.replace("-", "_")   # the systemd driver escapes "-" in each name part
SID = "a" * 64
CID = "b" * 64

# (parent as the kubelet sends it, expected cgroupsPath for the ID "x")
SYSTEMD = [
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + UID_ + ".slice",
     "kubepods-burstable-pod" + UID_ + ".slice:cri-containerd:x"),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + UID_ + ".slice",
     "kubepods-besteffort-pod" + UID_ + ".slice:cri-containerd:x"),
    ("/kubepods.slice/kubepods-pod" + UID_ + ".slice", "kubepods-pod" + UID_ + ".slice:cri-containerd:x"),
    ("/kubepods.slice/kubepods-besteffort.slice", "kubepods-besteffort.slice:cri-containerd:x"),
    ("kubepods.slice", "kubepods.slice:cri-containerd:x"),
    ("/kubepods.slice/kubepods-pod" + UID_ + ".slice/", "kubepods-pod" + UID_ + ".slice:cri-containerd:x"),
]
CGROUPFS = [
    ("/kubepods/burstable/pod" + UID, "/kubepods/burstable/pod" + UID + "/x"),
    ("/kubepods/besteffort/pod" + UID, "/kubepods/besteffort/pod" + UID + "/x"),
    ("/kubepods/pod" + UID, "/kubepods/pod" + UID + "/x"),
    ("/kubepods/pod" + UID + "/", "/kubepods/pod" + UID + "/x"),
    ("/kubepods", "/kubepods/x"),
]


@pytest.mark.parametrize(("parent", "want"), SYSTEMD + CGROUPFS)
def test_cgroups_path_of_kubelet_parents(parent: str, want: str) -> None:
    assert cgroups_path(parent, "x") == want


def test_no_parent_no_path() -> None:
    assert cgroups_path("", "x") == ""


@pytest.mark.parametrize(("parent", "systemd"), [(p, True) for p, _ in SYSTEMD] + [(p, False) for p, _ in CGROUPFS]
                         + [("", True), ("", False)])
def test_parent_of_the_driver_in_use_passes(parent: str, systemd: bool) -> None:
    check_parent(parent, systemd)


@pytest.mark.parametrize(("parent", "systemd"), [(SYSTEMD[0][0], False), (CGROUPFS[0][0], True)])
def test_parent_of_the_other_driver_is_refused(parent: str, systemd: bool) -> None:
    with pytest.raises(errors.InvalidArgument, match="cgroup driver"):
        check_parent(parent, systemd)


# ---- pause and workload of one pod land under the same pod cgroup ------------------------------------

FILES = SandboxFiles(hostname="/r/hostname", hosts="/r/hosts", resolv_conf="/r/resolv.conf", shm="/s/shm")
PAUSE_IMAGE = {"config": {"Entrypoint": ["/pause"]}}


def _pod(parent: str) -> cri.PodSandboxConfig:
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid=UID))
    cfg.linux.cgroup_parent = parent
    return cfg


def _workload_path(tmp_path: Path, pod: cri.PodSandboxConfig) -> str:
    app = App(config=load(None, {}), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))
    sandbox = SandboxRecord(id=SID, name="p_n_u_0", config=pod, runtime_handler="", created_at=0, pid=1)
    image = LocalImage(id="sha256:" + "c" * 64, target_digest="", target_media_type="", manifest_digest="",
                       config={"config": {"Cmd": ["/bin/sh"]}}, chain_id="", size=0)
    config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"), image=cri.ImageSpec(image="i"))
    return str(container_spec(app, CID, config, sandbox, image, oc.UserFiles()).spec["linux"]["cgroupsPath"])


@pytest.mark.parametrize("parent", [SYSTEMD[0][0], SYSTEMD[2][0]])
def test_systemd_pause_and_workload_in_one_pod_slice(tmp_path: Path, parent: str) -> None:
    pod = _pod(parent)
    pause = pause_spec(SID, pod, PAUSE_IMAGE, "pause", "/run/netns/x", FILES, 0)["linux"]["cgroupsPath"]
    work = _workload_path(tmp_path, pod)
    pod_slice = parent.rsplit("/", 1)[1]
    assert pause == f"{pod_slice}:cri-containerd:{SID}"   # scope cri-containerd-<id>.scope in the pod slice
    assert work == f"{pod_slice}:cri-containerd:{CID}"


@pytest.mark.parametrize("parent", [CGROUPFS[0][0], CGROUPFS[2][0]])
def test_cgroupfs_pause_and_workload_in_one_pod_dir(tmp_path: Path, parent: str) -> None:
    pod = _pod(parent)
    pause = pause_spec(SID, pod, PAUSE_IMAGE, "pause", "/run/netns/x", FILES, 0)["linux"]["cgroupsPath"]
    work = _workload_path(tmp_path, pod)
    assert pause == f"{parent}/{SID}" and work == f"{parent}/{CID}"


# ---- the driver in use: one answer for runc's options and RuntimeConfig --------------------------------

def _app(tmp_path: Path, **settings: object) -> App:
    return App(config=load(None, settings), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))


def _runc_systemd(app: App, handler: str) -> bool:
    from criproxy.protos import runc_options
    rt = container_runtime(app.config, handler)
    return bool(rt.options.value) and runc_options.Options.FromString(rt.options.value).systemd_cgroup


@pytest.mark.parametrize(("settings", "handler", "want"), [
    ({"cgroup_driver": "systemd"}, "", True),
    ({"cgroup_driver": "cgroupfs"}, "", False),
    ({"cgroup_driver": "cgroupfs", "runtime_handlers": {"runc": {"systemd_cgroup": True}}}, "", True),
    ({"cgroup_driver": "systemd", "runtime_handlers": {"runc": {"systemd_cgroup": False}}}, "", False),
    ({"cgroup_driver": "cgroupfs", "runtime_handlers": {"runc": {}, "sd": {"systemd_cgroup": True}}}, "sd", True),
    ({"cgroup_driver": "cgroupfs", "runtime_handlers": {"runc": {}, "sd": {"systemd_cgroup": True}}}, "runc", False),
])
async def test_driver_in_use_is_what_runc_is_told(tmp_path: Path, settings: dict[str, object], handler: str,
                                                  want: bool) -> None:
    app = _app(tmp_path, **settings)
    assert systemd_cgroup(app.config, handler) is want
    assert _runc_systemd(app, handler) is want
    if handler in ("", "runc"):
        resp = await runtime_config(app, cri.RuntimeConfigRequest())
        assert resp.linux.cgroup_driver == (cri.SYSTEMD if want else cri.CGROUPFS)


def test_auto_driver_follows_systemd_as_pid1(tmp_path: Path) -> None:
    want = Path("/run/systemd/system").is_dir()   # how systemd itself and the kubelet tell
    assert systemd_cgroup(_app(tmp_path, cgroup_driver="auto").config, "") is want
