"""Image volumes (CRI Mount.image, kubelet's ImageVolume): a pulled image mounted read-only in the
container, whole or one directory of it, shared by the containers that mount it and released with
the last of them; bad sub paths and mount settings are INVALID_ARGUMENT and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import File, ImageConfig, Symlink, build_image
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config

SLEEP = ["sleep", "1000"]
FILES = {"data/hello.txt": File("hi from the image\n"), "data/sub/x": File("x\n"), "top.txt": File("top\n"),
         "abs-link": Symlink("/data"), "rel-link": Symlink("data/sub"), "out-link": Symlink("../../..")}


@pytest.fixture(scope="module")
def vol_images(testenv: Environment, busybox: str) -> dict[str, str]:
    """Two data images: one layer (bind-mounted) and two layers (an overlay of them)."""
    one = testenv.push(build_image("volone", "v1", FILES, ImageConfig()))
    two = testenv.push(build_image("voltwo", "v1", {"more.txt": File("second layer\n")}, ImageConfig(),
                                   base=[FILES]))
    with CriClient(testenv.criproxies[0].socket) as c:
        for ref in (one, two):
            c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=120)
    return {"one": one, "two": two}


def _image_mount(ref: str, path: str = "/vol", sub: str = "", readonly: bool = True, **kw: object) -> cri.Mount:
    return cri.Mount(container_path=path, readonly=readonly, image=cri.ImageSpec(image=ref),  # type: ignore[arg-type]
                     image_sub_path=sub, **kw)


def _views(ctr: object) -> list[str]:
    out = ctr("snapshots", "ls")  # type: ignore[operator]
    return [line.split()[0] for line in out.splitlines() if "criproxy-imagevolume-" in line]


def _mounted(path: str | Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _digest(pod: Pod, ref: str) -> str:
    img = pod.client.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))).image
    return str(img.repo_digests[0])


@pytest.mark.parametrize("which", ["one", "two"])
def test_image_volume_whole_image(pod: Pod, vol_images: dict[str, str], which: str, ctr: object) -> None:
    ref = vol_images[which]
    cid = pod.run(container_config(pod.image, command=SLEEP, mounts=[_image_mount(ref)]))
    assert pod.sh(cid, "cat /vol/data/hello.txt /vol/top.txt") == "hi from the image\ntop\n"
    if which == "two":
        assert pod.sh(cid, "cat /vol/more.txt") == "second layer\n"
    assert pod.exec(cid, "touch", "/vol/new").exit_code != 0                  # read-only
    assert pod.sh(cid, "grep ' /vol ' /proc/self/mountinfo").split()[5].split(",")[0] == "ro"
    mount = next(m for m in pod.status(cid).mounts if m.container_path == "/vol")
    assert mount.image.image == ref and mount.image.image_ref == _digest(pod, ref)
    assert mount.host_path and _mounted(mount.host_path)
    assert len(_views(ctr)) >= 1


def test_image_volume_sub_path_and_sharing(pod: Pod, vol_images: dict[str, str], ctr: object) -> None:
    ref = vol_images["two"]
    a = pod.run(container_config(pod.image, name="a", command=SLEEP, mounts=[_image_mount(ref, sub="data")]))
    b = pod.run(container_config(pod.image, name="b", command=SLEEP,
                                 mounts=[_image_mount(ref, sub="rel-link"), _image_mount(ref, path="/whole")]))
    assert pod.sh(a, "cat /vol/hello.txt") == "hi from the image\n"
    assert pod.exec(a, "test", "-e", "/vol/data").exit_code != 0             # only the sub dir
    assert pod.sh(b, "cat /vol/x") == "x\n"                                  # a link inside the image
    assert pod.sh(b, "cat /whole/more.txt") == "second layer\n"
    whole = Path(next(m.host_path for m in pod.status(b).mounts if m.container_path == "/whole"))
    assert _mounted(whole)
    views = _views(ctr)
    # b goes: a still reads through the shared view
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=b, timeout=0))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=b))
    assert pod.sh(a, "cat /vol/hello.txt") == "hi from the image\n"
    assert _mounted(whole) and _views(ctr) == views
    # the last one goes: the host mount, the view and its lease go too
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=a, timeout=0))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=a))
    assert not _mounted(whole) and not whole.exists()
    key = f"criproxy-imagevolume-{whole.name}"
    assert key not in _views(ctr)
    assert key not in ctr("leases", "ls")  # type: ignore[operator]


@pytest.mark.parametrize(("mount", "words"), [
    (lambda ref: _image_mount(ref, sub="missing"), "does not exist"),
    (lambda ref: _image_mount(ref, sub="../.."), "escapes"),
    (lambda ref: _image_mount(ref, sub="out-link"), "escapes"),
    (lambda ref: _image_mount(ref, sub="abs-link"), "escapes"),
    (lambda ref: _image_mount(ref, sub="top.txt"), "not a directory"),
    (lambda ref: _image_mount(ref, sub="/data"), "relative"),
    (lambda ref: _image_mount(ref, readonly=False), "readonly"),
    (lambda ref: _image_mount(ref, host_path="/tmp"), "host path"),
])
def test_image_volume_bad_input(pod: Pod, vol_images: dict[str, str], ctr: object, mount: object,
                                words: str) -> None:
    before, views = ctr("containers", "ls", "-q"), _views(ctr)  # type: ignore[operator]
    cfg = container_config(pod.image, name="bad", command=SLEEP, mounts=[mount(vol_images["one"])])  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as e:
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert words in (e.value.details() or ""), e.value.details()
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]
    assert _views(ctr) == views                                             # the view made for it went


def test_image_volume_of_an_image_not_pulled(pod: Pod, testenv: Environment) -> None:
    cfg = container_config(pod.image, name="np", command=SLEEP,
                           mounts=[_image_mount(testenv.image_ref("never-pulled", "v1"))])
    with pytest.raises(grpc.RpcError) as e:
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()
    assert "never-pulled" in (e.value.details() or "")


def test_image_volume_survives_a_restart_and_an_orphan_is_pruned(pod: Pod, vol_images: dict[str, str], ctr: object,
                                                                 criproxy_proc: CriproxyProcess) -> None:
    """A killed criproxy comes back knowing which views its containers use (from their records):
    the used one stays mounted and is released with its container, one whose container was removed
    while criproxy was down goes at start."""
    kept = pod.run(container_config(pod.image, name="kept", command=SLEEP, mounts=[_image_mount(vol_images["one"])]))
    gone = pod.run(container_config(pod.image, name="gone", command=SLEEP, mounts=[_image_mount(vol_images["two"])]))
    kept_host = next(m.host_path for m in pod.status(kept).mounts if m.container_path == "/vol")
    gone_host = next(m.host_path for m in pod.status(gone).mounts if m.container_path == "/vol")
    criproxy_proc.kill()
    ctr("tasks", "rm", "-f", gone)  # type: ignore[operator]
    ctr("containers", "rm", gone)  # type: ignore[operator]
    criproxy_proc.start()
    pod.client.reconnect()
    pod.rt = pod.client.runtime
    assert _mounted(kept_host) and pod.sh(kept, "cat /vol/top.txt") == "top\n"
    assert not _mounted(gone_host) and f"criproxy-imagevolume-{Path(gone_host).name}" not in _views(ctr)
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=kept, timeout=0))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=kept))
    assert not _mounted(kept_host)
