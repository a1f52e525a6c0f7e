"""The CRI view of an image: user from the config, names split into tags and digests, record names."""

from __future__ import annotations

from typing import Any

import pytest

from criproxy.images.catalog import _user
from criproxy.images.local import LocalImage
from criproxy.images.records import labels_for, names_for
from criproxy.images.reference import parse

ID = "sha256:" + "c" * 64
DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(("user", "want"), [
    ("", (None, "")), ("1000", (1000, "")), ("1000:1000", (1000, "")), ("app", (None, "app")),
    ("app:staff", (None, "app")), ("0", (0, "")),
])
def test_user_from_config(user: str, want: tuple[int | None, str]) -> None:
    config: dict[str, Any] = {"config": {"User": user}}
    assert _user(config) == want


def test_local_image_names() -> None:
    img = LocalImage(id=ID, target_digest=DIGEST, target_media_type="", manifest_digest=DIGEST, config={},
                     chain_id="", size=1, names=["docker.io/library/busybox:latest",
                                                 f"docker.io/library/busybox@{DIGEST}", ID])
    assert img.repo_tags == ["docker.io/library/busybox:latest"]
    assert img.repo_digests == [f"docker.io/library/busybox@{DIGEST}"]
    assert img.record_name == "docker.io/library/busybox:latest"


def test_record_names_for_tag_and_digest_pulls() -> None:
    assert names_for(parse("busybox"), DIGEST, ID) == [
        "docker.io/library/busybox:latest", f"docker.io/library/busybox@{DIGEST}", ID]
    assert names_for(parse(f"busybox:1.36@{DIGEST}"), DIGEST, ID) == [f"docker.io/library/busybox@{DIGEST}", ID]
    assert labels_for(False) == {"io.cri-containerd.image": "managed"}
    assert labels_for(True)["io.cri-containerd.pinned"] == "pinned"
