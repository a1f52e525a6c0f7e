"""The harness pieces other tests lean on: derived images, netns tracking, restarts of both daemons."""

from __future__ import annotations

import uuid

import pytest

from tests.harness import File, ImageConfig, build_image, busybox_layers
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import run

pytestmark = pytest.mark.integration


def test_derived_image_builds_pushes_and_runs(testenv: Environment) -> None:
    layout = build_image("hello", "v1", {"hello.txt": File("hi from a layer\n")},
                         ImageConfig(cmd=["cat", "/hello.txt"], user="1000:1000"), base=busybox_layers())
    ref = testenv.push(layout)
    testenv.ctr("images", "pull", "--plain-http", ref, namespace="harness")
    out = testenv.ctr("run", "--rm", ref, f"hello-{uuid.uuid4().hex[:12]}", namespace="harness")
    assert out == "hi from a layer\n"
    uid = testenv.ctr("run", "--rm", ref, f"id-{uuid.uuid4().hex[:12]}", "id", namespace="harness")
    assert "uid=1000(app) gid=1000(app)" in uid


def test_add_netns_is_tracked(testenv: Environment) -> None:
    name = testenv.add_netns()
    assert name in run(["ip", "netns", "list"])
    assert name in testenv.netns


def test_containerd_restart_keeps_tasks(testenv: Environment) -> None:
    ref = testenv.busybox_image
    cid = f"survivor-{uuid.uuid4().hex[:12]}"
    testenv.ctr("images", "pull", "--plain-http", ref, namespace="harness")
    testenv.ctr("run", "-d", ref, cid, "sleep", "600", namespace="harness")
    try:
        testenv.ctrd.restart()
        assert "RUNNING" in testenv.ctr("tasks", "ls", namespace="harness").split(cid, 1)[1].splitlines()[0]
    finally:
        testenv.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace="harness", check=False)
        testenv.ctr("tasks", "delete", "-f", cid, namespace="harness", check=False)
        testenv.ctr("containers", "delete", cid, namespace="harness", check=False)


def test_criproxy_kill_and_start(criproxy: CriproxyProcess, cri: CriClient) -> None:
    assert cri.version().runtime_api_version == "v1"
    criproxy.kill()
    assert not criproxy.alive()
    criproxy.start()
    cri.reconnect()
    assert cri.version().runtime_api_version == "v1"
