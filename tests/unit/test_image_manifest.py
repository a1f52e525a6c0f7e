"""Manifest logic: platform choice, child GC labels, ingest kinds, diff IDs, chain IDs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from criproxy import errors
from criproxy.images.descriptor import Descriptor
from criproxy.images.local import chain_ids
from criproxy.images.manifest import (
    Platform,
    child_labels,
    diff_ids,
    load,
    parse_manifest,
    pick_platform,
    source_label,
    write_kind,
)

D = ["sha256:" + c * 64 for c in "abcdef"]


def _entry(digest: str, arch: str, variant: str = "", os: str = "linux") -> dict[str, object]:
    plat = {"os": os, "architecture": arch, **({"variant": variant} if variant else {})}
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 10,
            "platform": plat}


INDEX = {"manifests": [_entry(D[0], "arm64", "v8"), _entry(D[1], "amd64"), _entry(D[2], "arm", "v7"),
                       _entry(D[3], "arm", "v6"), _entry(D[4], "amd64", os="windows")]}


@pytest.mark.parametrize(("want", "digest"), [
    (Platform("linux", "amd64"), D[1]),
    (Platform("linux", "arm64", "v8"), D[0]),
    (Platform("linux", "arm64"), D[0]),
    (Platform("linux", "arm", "v7"), D[2]),
    (Platform("linux", "arm", "v6"), D[3]),
])
def test_pick_platform(want: Platform, digest: str) -> None:
    assert pick_platform(INDEX, want).digest == digest


def test_pick_platform_names_what_is_offered() -> None:
    with pytest.raises(errors.NotFound, match=r"linux/riscv64.*offers linux/s390x"):
        pick_platform({"manifests": [_entry(D[0], "s390x")]}, Platform("linux", "riscv64"))


def test_single_unmarked_manifest_is_taken() -> None:
    idx = {"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[5], "size": 3}]}
    assert pick_platform(idx, Platform("linux", "amd64")).digest == D[5]


def test_child_labels() -> None:
    assert child_labels(INDEX, "application/vnd.oci.image.index.v1+json") == {
        f"containerd.io/gc.ref.content.m.{i}": m["digest"] for i, m in enumerate(INDEX["manifests"])}
    man = {"config": {"digest": D[0], "size": 1}, "layers": [{"digest": D[1], "size": 2}, {"digest": D[2], "size": 3}]}
    assert child_labels(man, "application/vnd.docker.distribution.manifest.v2+json") == {
        "containerd.io/gc.ref.content.config": D[0], "containerd.io/gc.ref.content.l.0": D[1],
        "containerd.io/gc.ref.content.l.1": D[2]}


def test_source_label_drops_port() -> None:
    assert source_label("127.0.0.1:5000", "a/b") == ("containerd.io/distribution.source.127.0.0.1", "a/b")


@pytest.mark.parametrize(("media", "kind"), [
    ("application/vnd.oci.image.index.v1+json", "index"),
    ("application/vnd.docker.distribution.manifest.list.v2+json", "index"),
    ("application/vnd.docker.distribution.manifest.v2+json", "manifest"),
    ("application/vnd.oci.image.config.v1+json", "config"),
    ("application/vnd.oci.image.layer.v1.tar+gzip", "layer"),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", "layer"),
    ("application/json", "unknown"),
])
def test_write_kind(media: str, kind: str) -> None:
    assert write_kind(media) == kind


def test_manifest_and_diff_ids_must_agree() -> None:
    man = parse_manifest({"config": {"digest": D[0], "size": 1}, "layers": [{"digest": D[1], "size": 2}]},
                         "application/vnd.oci.image.manifest.v1+json")
    assert len(man.layers) == 1
    assert diff_ids({"rootfs": {"type": "layers", "diff_ids": [D[2]]}}, 1) == [D[2]]
    with pytest.raises(errors.FailedPrecondition):
        diff_ids({"rootfs": {"type": "layers", "diff_ids": []}}, 1)
    with pytest.raises(errors.InvalidArgument):
        parse_manifest({"config": {"digest": "md5:x", "size": 1}}, "application/vnd.oci.image.manifest.v1+json")


def test_chain_ids() -> None:
    second = "sha256:" + hashlib.sha256(f"{D[0]} {D[1]}".encode()).hexdigest()
    assert chain_ids([D[0], D[1]]) == [D[0], second]


OCI_INDEX, OCI_MANIFEST = "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize("step", [
    lambda: load(b"[" * 100_000 + b"]" * 100_000, "manifest x"),
    lambda: child_labels({"manifests": [{"size": 10}]}, OCI_INDEX),
    lambda: child_labels({"manifests": ["not-a-descriptor"]}, OCI_INDEX),
    lambda: child_labels({"config": "sha256:x", "layers": []}, OCI_MANIFEST),
    lambda: child_labels({"config": {"digest": D[0]}, "layers": [7]}, OCI_MANIFEST),
    lambda: child_labels({"manifests": 5}, OCI_INDEX),
    lambda: diff_ids({"rootfs": ["layers"]}, 1),
    lambda: diff_ids({"rootfs": {"type": "layers", "diff_ids": 5}}, 1),
    lambda: pick_platform({"manifests": [{"digest": D[0], "size": 1, "platform": "linux/amd64"}]}),
    lambda: pick_platform({"manifests": 5}),
    lambda: Descriptor.from_json({"digest": D[0], "size": 1, "annotations": ["x"]}),
])
def test_malformed_registry_documents_are_clear_errors(step: Callable[[], object]) -> None:
    """A registry's malformed manifest, index or config is a CRI error naming the problem, never an
    unexpected exception (which the edge would report as UNKNOWN "internal error: KeyError")."""
    with pytest.raises(errors.CriError):
        step()
