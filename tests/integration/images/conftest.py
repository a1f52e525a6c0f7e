"""Fixtures for the image tests: fresh repository names, extra images, a counting/stalling proxy.

Every test pushes the session's images under a repository name of its own, so removing or
re-pulling never disturbs the busybox/pause records other tests rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.harness.env import Environment
from tests.harness.images import File, ImageConfig, ImageLayout, build_image, busybox_layers
from tests.harness.registry_tools import RegistryProxy


@pytest.fixture
def unique_name(testenv: Environment) -> Iterator[Callable[[str], str]]:
    """``unique_name("bb")`` → ``it-1a2b3c4d/bb``: a repository no other test uses.

    At teardown the records the test's pulls left in the session criproxy's namespace under these
    names go: a second name for the session's busybox would otherwise become the first repo tag of
    that image for every later test (ContainerStatus reports the image's first tag, as containerd's
    CRI does), and the parity test would see criproxy's containers named after it."""
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    yield lambda name: f"{prefix}/{name}"
    names = [n for n in testenv.ctr("images", "ls", "-q", check=False).split()
             if f"/{prefix}/" in n]                      # any host: some tests pull through a proxy
    if names:
        testenv.ctr("images", "rm", *names, check=False)


@pytest.fixture(scope="session")
def layered_image(testenv: Environment) -> ImageLayout:
    """busybox plus a second layer with a file and a non-root user, for run and status checks."""
    return build_image("layered", "v1", {"etc/layered.txt": File(b"from the second layer\n")},
                       ImageConfig(cmd=["cat", "/etc/layered.txt"], user="1000:1000"), base=busybox_layers())


@pytest.fixture
def pushed(testenv: Environment, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """``pushed(layout_or_name, tag="latest")`` → a reference to a fresh copy in the session registry
    (under unique_name, which removes what the test pulled under it)."""
    def push(image: ImageLayout | str = "busybox", tag: str = "latest") -> str:
        layout = testenv.images[image] if isinstance(image, str) else image
        return testenv.registry.push(layout, unique_name(layout.name), tag)
    yield push


@pytest.fixture
def proxy(testenv: Environment) -> Iterator[RegistryProxy]:
    p = RegistryProxy(testenv.registry_host)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def run_gc(testenv: Environment, namespace: str) -> None:
    """Make containerd collect garbage now: a lease deleted with --sync runs GC before returning."""
    lease = f"gc-{uuid.uuid4().hex[:8]}"
    testenv.ctr("leases", "create", "--id", lease, namespace=namespace)
    testenv.ctr("leases", "delete", "--sync", lease, namespace=namespace)


def leftovers(testenv: Environment, namespace: str) -> dict[str, list[str]]:
    """What containerd still holds in ``namespace``: content, ingests, snapshots, leases, images."""
    def lines(*args: str) -> list[str]:
        return [x for x in testenv.ctr(*args, namespace=namespace).splitlines()[1:] if x.strip()]
    return {"content": lines("content", "ls"), "ingests": lines("content", "active"),
            "snapshots": lines("snapshots", "ls"), "leases": lines("leases", "ls"), "images": lines("images", "ls")}

