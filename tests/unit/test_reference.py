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


@pytest.mark.parametrize("text", [
    "busybox\n", "busybox:latest\n", "busybox\x00", "büsybox", "busybox:tàg", "busybox:\uff11", "\uff42usybox",
    "a" * 256, "docker.io/" + "a" * 250, "busybox@sha256:" + "A" * 64, "busybox@sha256:" + "a" * 63,
    "busybox@md5:" + "a" * 32, "busybox@sha256:" + "a" * 64 + "\n", "host:99999999999999999999x/a",
    "-host.io/a", "host-.io/a", "a" * 64, "x" * 1_000_000, "busybox:\u0661", "a/b/\u00e9",
])
def test_distribution_grammar_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as e:
        parse(text)
    assert len(str(e.value)) < 1000


@pytest.mark.parametrize("text", ["busybox@sha512:" + "a" * 128, "[::1]:5000/a/b:v", "a__b-c/e_f--g.h:T1.x-y",
                                  "localhost:5000/x", "sha256:" + "a" * 63])
def test_distribution_grammar_accepts(text: str) -> None:
    assert parse(text)


def test_image_id_is_matched_in_full() -> None:
    assert image_id("c" * 64 + "\n") is None
    assert image_id("sha256:" + "c" * 64 + "x") is None
