"""ImageStatus, ListImages, StreamImages, RemoveImage and ImageFsInfo against real pulled images."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.harness.images import ImageLayout

NS = "criproxy"


def _spec(ref: str) -> cri.ImageSpec:
    return cri.ImageSpec(image=ref)


def _names(ref: str, image_id: str, digest: str) -> list[str]:
    return [ref, f"{ref.rsplit(':', 1)[0]}@{digest}", image_id]


@pytest.fixture
def pulled(cri: CriClient, pushed: Callable[..., str], layered_image: ImageLayout) -> tuple[str, str, str]:
    """(tag ref, image ID, manifest digest) of a freshly pushed and pulled two-layer image."""
    ref = pushed(layered_image, "v1")
    image_id = cri.image.PullImage(cri.pb.PullImageRequest(image=_spec(ref))).image_ref
    return ref, image_id, layered_image.manifest_digest()


@pytest.mark.parametrize("which", [0, 1, 2], ids=["tag", "digest", "id"])
def test_status_by_any_name(cri: CriClient, pulled: tuple[str, str, str], which: int) -> None:
    ref, image_id, digest = pulled
    name = _names(ref, image_id, digest)[which]
    img = cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec(name))).image
    assert img.id == image_id
    assert ref in img.repo_tags  # earlier tests may have pulled the same image under other names
    assert f"{ref.rsplit(':', 1)[0]}@{digest}" in img.repo_digests
    assert img.size > 1_000_000
    assert img.uid.value == 1000 and img.username == ""
    assert not img.pinned


def test_status_of_unknown_image_is_empty(testenv: Environment, cri: CriClient) -> None:
    resp = cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec(f"{testenv.registry_host}/nope:1")))
    assert not resp.HasField("image")
    resp = cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec("sha256:" + "0" * 64)))
    assert not resp.HasField("image")


def test_status_verbose_has_manifest_and_config(cri: CriClient, pulled: tuple[str, str, str]) -> None:
    ref, image_id, digest = pulled
    resp = cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec(ref), verbose=True))
    info = json.loads(resp.info["info"])
    assert info["unpacked"] is True
    assert info["imageSpec"]["config"]["User"] == "1000:1000"
    assert info["manifest"]["config"]["digest"] == image_id
    assert info["target"]["digest"] == digest
    assert info["chainID"].startswith("sha256:")


def test_pause_image_is_pinned(testenv: Environment, cri: CriClient) -> None:
    cri.image.PullImage(cri.pb.PullImageRequest(image=_spec(testenv.pause_image)))
    img = cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec(testenv.pause_image))).image
    assert img.pinned
    assert "io.cri-containerd.pinned=pinned" in testenv.ctr("images", "ls", namespace=NS)


def test_list_groups_records_by_image_id_and_filters(cri: CriClient, pulled: tuple[str, str, str]) -> None:
    ref, image_id, digest = pulled
    images = cri.image.ListImages(cri.pb.ListImagesRequest()).images
    mine = [i for i in images if i.id == image_id]
    assert len(mine) == 1 and ref in mine[0].repo_tags
    assert len({i.id for i in images}) == len(images)
    for name in _names(ref, image_id, digest):
        flt = cri.pb.ImageFilter(image=_spec(name))
        got = cri.image.ListImages(cri.pb.ListImagesRequest(filter=flt)).images
        assert [i.id for i in got] == [image_id]


def test_stream_images_matches_list(cri: CriClient, pulled: tuple[str, str, str]) -> None:
    listed = sorted(i.id for i in cri.image.ListImages(cri.pb.ListImagesRequest()).images)
    streamed = sorted(i.id for r in cri.image.StreamImages(cri.pb.StreamImagesRequest()) for i in r.images)
    assert streamed == listed and pulled[1] in streamed


@pytest.mark.parametrize("which", [0, 1, 2], ids=["tag", "digest", "id"])
def test_remove_by_any_name_removes_every_record(testenv: Environment, cri: CriClient,
                                                 pulled: tuple[str, str, str], which: int) -> None:
    ref, image_id, digest = pulled
    cri.image.RemoveImage(cri.pb.RemoveImageRequest(image=_spec(_names(ref, image_id, digest)[which])))
    records = testenv.ctr("images", "ls", "-q", namespace=NS).split()
    for name in _names(ref, image_id, digest):
        assert name not in records
        assert not cri.image.ImageStatus(cri.pb.ImageStatusRequest(image=_spec(name))).HasField("image")
    cri.image.RemoveImage(cri.pb.RemoveImageRequest(image=_spec(ref)))  # idempotent


def test_remove_frees_content_not_shared(testenv: Environment, cri: CriClient, pulled: tuple[str, str, str]) -> None:
    _, image_id, digest = pulled
    cri.image.RemoveImage(cri.pb.RemoveImageRequest(image=_spec(image_id)))
    content = testenv.ctr("content", "ls", "-q", namespace=NS).split()
    # the second layer and the config are only this image's: gone after the synchronous delete
    assert image_id not in content and digest not in content


def test_image_fs_info(testenv: Environment, cri: CriClient, pulled: tuple[str, str, str]) -> None:
    resp = cri.image.ImageFsInfo(cri.pb.ImageFsInfoRequest())
    snap, content = resp.image_filesystems
    assert snap.fs_id.mountpoint.endswith("io.containerd.snapshotter.v1.overlayfs")
    assert content.fs_id.mountpoint.endswith("io.containerd.content.v1.content")
    assert snap.used_bytes.value > 1_000_000 and snap.inodes_used.value > 0
    assert content.used_bytes.value > 1_000_000 and content.inodes_used.value >= 4
    assert snap.timestamp > 0
    assert resp.container_filesystems[0].fs_id.mountpoint == snap.fs_id.mountpoint
