"""Reference normalisation must match what kubelet/crictl users type and what containerd records."""

import pytest

from criproxy import errors
from criproxy.images.reference import image_id, parse


@pytest.mark.parametrize(("text", "want"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
    ("localhost/pause:3.9", "localhost/pause:3.9"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("quay.io/a/b/c:v1", "quay.io/a/b/c:v1"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ("busybox:1@sha256:" + "b" * 64, "docker.io/library/busybox:1@sha256:" + "b" * 64),
])
def test_normalise(text: str, want: str) -> None:
    assert str(parse(text)) == want


@pytest.mark.parametrize("text", ["", " busybox", "Busybox", "busybox:", "a:b:c", "busybox@sha256:xyz",
                                  "bad..name/x", "x:" + "t" * 200])
def test_invalid(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse(text)


def test_image_id() -> None:
    assert image_id("sha256:" + "c" * 64) == "sha256:" + "c" * 64
    assert image_id("c" * 64) == "sha256:" + "c" * 64
    assert image_id("busybox") is None
