"""``ensure_image`` (the sandbox code's entry point) against the real containerd, in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from criproxy.app import App
from criproxy.config import Config
from criproxy.containerd import Containerd
from criproxy.images.pull import close_http, ensure_image
from tests.harness.env import Environment


@pytest.fixture
async def app(testenv: Environment) -> AsyncIterator[App]:
    ns = f"img-ens-{uuid.uuid4().hex[:8]}"
    cfg = Config(namespace=ns, registry_config_path=testenv.hosts_dir, pause_image=testenv.pause_image)
    application = App(config=cfg, ctrd=Containerd(str(testenv.containerd_address), ns))
    yield application
    await close_http(application)
    await application.ctrd.close()


async def test_ensure_image_pulls_then_reuses_then_re_unpacks(
        testenv: Environment, app: App, pushed: Callable[..., str]) -> None:
    ref = pushed("busybox")
    ns = app.config.namespace
    first = await ensure_image(app, ref)
    assert first.chain_id and ref in first.repo_tags
    assert "io.cri-containerd.pinned" not in testenv.ctr("images", "ls", namespace=ns)
    again = await ensure_image(app, ref)
    assert again.id == first.id
    testenv.ctr("snapshots", "rm", first.chain_id, namespace=ns)  # e.g. another tool removed it
    assert first.chain_id not in testenv.ctr("snapshots", "ls", namespace=ns)
    await ensure_image(app, ref)
    assert first.chain_id in testenv.ctr("snapshots", "ls", namespace=ns)


async def test_ensure_image_of_the_pause_image_pins_it(testenv: Environment, app: App) -> None:
    image = await ensure_image(app, testenv.pause_image)
    assert image.chain_id
    assert "io.cri-containerd.pinned=pinned" in testenv.ctr("images", "ls", namespace=app.config.namespace)
