"""The image cache follows containerd: changes made with containerd's own API (``ctr``) behind
criproxy's back show in ImageStatus and ListImages within a second (image events), and a change made
while the event stream was down shows once the stream is back (the relist on reconnect)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from criproxy.app import App
from criproxy.config import Config
from criproxy.container import recover as container_recover
from criproxy.containerd import Containerd
from criproxy.images import catalog
from criproxy.images.pull import close_http, pull_image
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.harness.images import File, ImageConfig, build_image, busybox_layers

FOLLOW_WITHIN = 1.0     # seconds: the bound for a change behind criproxy's back


def _status(cri_client: CriClient, ref: str) -> cri.ImageStatusResponse:
    return cri_client.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref)))


def _listed_ids(cri_client: CriClient) -> set[str]:
    return {i.id for i in cri_client.image.ListImages(cri.ListImagesRequest()).images}


def _within(check: Callable[[], Any], seconds: float, what: str) -> float:
    """Poll ``check`` until true; fail when it takes longer than ``seconds``; the time it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what} not seen within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - start


def _unique_image() -> Any:
    """An image no other test pulls (its own layer, so its own config digest and ID record)."""
    return build_image("cached", uuid.uuid4().hex[:8], {"blob.bin": File(os.urandom(64 * 1024))},
                       ImageConfig(cmd=["true"]), base=busybox_layers())


def test_image_removed_with_ctr_leaves_status_and_list(cri: CriClient, ctr: Callable[..., str],
                                                       pushed: Callable[..., str]) -> None:
    ref = pushed(_unique_image())
    image_id = cri.image.PullImage(cri.pb.PullImageRequest(image=cri.pb.ImageSpec(image=ref))).image_ref
    st = _status(cri, ref)
    assert st.image.id == image_id and image_id in _listed_ids(cri)   # read (and cached) before the change
    repo = ref.rsplit(":", 1)[0]
    names = [n for n in ctr("images", "ls", "-q").split() if n == image_id or n.startswith((repo + ":", repo + "@"))]
    assert len(names) == 3, names                                   # tag, repo digest, ID
    ctr("images", "rm", *names)
    _within(lambda: not _status(cri, ref).HasField("image") and not _status(cri, image_id).HasField("image")
            and image_id not in _listed_ids(cri), FOLLOW_WITHIN, "the removal")


def test_tag_added_with_ctr_shows_in_status(cri: CriClient, ctr: Callable[..., str],
                                            pushed: Callable[..., str]) -> None:
    ref = pushed("busybox")
    image_id = cri.image.PullImage(cri.pb.PullImageRequest(image=cri.pb.ImageSpec(image=ref))).image_ref
    extra = f"{ref.rsplit(':', 1)[0]}:extra-{uuid.uuid4().hex[:6]}"
    assert not _status(cri, extra).HasField("image")
    ctr("images", "tag", ref, extra)
    _within(lambda: _status(cri, extra).image.id == image_id, FOLLOW_WITHIN, "the new tag")
    img = _status(cri, ref).image
    assert extra in img.repo_tags and ref in img.repo_tags


@pytest.fixture
async def app(testenv: Environment) -> AsyncIterator[App]:
    """criproxy's parts in-process on the real containerd, in a namespace of their own."""
    ns = f"img-cache-{uuid.uuid4().hex[:8]}"
    cfg = Config(namespace=ns, registry_config_path=testenv.hosts_dir, pause_image=testenv.pause_image,
                 root=testenv.scratch_dir("root"), state=testenv.scratch_dir("state"))
    application = App(config=cfg, ctrd=Containerd(str(testenv.containerd_address), ns))
    yield application
    for task in list(application.background):
        task.cancel()
    await asyncio.gather(*application.background, return_exceptions=True)
    await close_http(application)
    await application.ctrd.close()


async def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {seconds} s")
        await asyncio.sleep(0.02)


async def test_change_while_the_event_stream_was_down_is_relisted(
        testenv: Environment, app: App, pushed: Callable[..., str]) -> None:
    ns = app.config.namespace
    ref = pushed("busybox")
    image = await pull_image(app, ref)
    assert (await catalog.find(app, ref)) is not None

    container_recover.start_relay(app)               # the production wiring: subscription + relist timer
    await asyncio.wait_for(app.relay.connected.wait(), 10)
    extra = f"{ref.rsplit(':', 1)[0]}:live"
    await asyncio.to_thread(testenv.ctr, "images", "tag", ref, extra, namespace=ns)
    await _until(lambda: app.images.catalog.for_name(extra) is not None, FOLLOW_WITHIN, "an event-driven change")

    for task in list(app.background):                 # the stream is lost: nothing hears containerd now
        task.cancel()
    await asyncio.gather(*app.background, return_exceptions=True)
    app.relay.connected.clear()
    names = sorted(app.images.catalog.by_id[image.id].image.names)
    await asyncio.to_thread(testenv.ctr, "images", "rm", *names, namespace=ns)
    await asyncio.sleep(0.3)
    assert app.images.catalog.by_id.get(image.id) is not None    # missed: no stream, no relist yet

    container_recover.start_relay(app)               # reconnect → relist
    await asyncio.wait_for(app.relay.connected.wait(), 10)
    await _until(lambda: image.id not in app.images.catalog.by_id and (app.images.catalog.for_name(ref) is None),
                 FOLLOW_WITHIN, "the relist after the reconnect")


def test_image_fs_info_follows_a_pull(testenv: Environment, cri: CriClient, pushed: Callable[..., str]) -> None:
    """ImageFsInfo answers a figure measured in the background: a pull shows in it by the next
    refresh (USAGE_PERIOD, 10 s), and the first answer already counts what is there."""
    def content_bytes() -> int:
        return int(cri.image.ImageFsInfo(cri.pb.ImageFsInfoRequest()).image_filesystems[1].used_bytes.value)
    before = content_bytes()
    assert before > 0
    ref = pushed(_unique_image())
    cri.image.PullImage(cri.pb.PullImageRequest(image=cri.pb.ImageSpec(image=ref)))
    _within(lambda: content_bytes() >= before + 64 * 1024, 30, "the pulled layer in ImageFsInfo")


async def test_a_miss_is_confirmed_with_containerd(testenv: Environment, app: App,
                                                   pushed: Callable[..., str]) -> None:
    """With no event stream at all, an image another tool added is found by the next lookup (a miss
    asks containerd once), and a name containerd lacks is still absent."""
    ns = app.config.namespace
    ref = pushed("busybox")
    image = await pull_image(app, ref)
    extra = f"{ref.rsplit(':', 1)[0]}:added-{uuid.uuid4().hex[:6]}"
    assert app.images.catalog.for_name(extra) is None
    await asyncio.to_thread(testenv.ctr, "images", "tag", ref, extra, namespace=ns)
    found = await catalog.find(app, extra)
    assert found is not None and found.image.id == image.id and extra in found.image.repo_tags
    assert (await catalog.find(app, f"{ref.rsplit(':', 1)[0]}:never")) is None
