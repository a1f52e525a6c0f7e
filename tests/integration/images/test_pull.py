"""PullImage lands a normal containerd image: content, labels, snapshots, three records, runnable by ctr."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.images import ImageLayout
from tests.harness.registry_tools import RegistryProxy

NS = "criproxy"


def _pull(client: CriClient, ref: str) -> str:
    resp = client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)))
    assert resp.image_ref.startswith("sha256:")
    return str(resp.image_ref)


def _records(testenv: Environment) -> dict[str, str]:
    """containerd image name → target digest in criproxy's namespace."""
    out = {}
    for line in testenv.ctr("images", "ls", namespace=NS).splitlines()[1:]:
        parts = line.split()
        out[parts[0]] = parts[2]
    return out


def _config_digest(layout: ImageLayout) -> str:
    blobs = layout.path / "blobs" / "sha256"
    man = json.loads((blobs / layout.manifest_digest().split(":")[1]).read_bytes())
    return str(man["config"]["digest"])


def test_pull_by_tag_creates_three_records_and_runs_under_ctr(
        testenv: Environment, cri: CriClient, pushed: Callable[..., str], layered_image: ImageLayout) -> None:
    ref = pushed(layered_image, "v1")
    image_id = _pull(cri, ref)
    assert image_id == _config_digest(layered_image)
    repo, _ = ref.rsplit(":", 1)
    digest = layered_image.manifest_digest()
    records = _records(testenv)
    assert records[ref] == digest
    assert records[f"{repo}@{digest}"] == digest
    assert records[image_id] == digest
    check = testenv.ctr("images", "check", namespace=NS)
    line = next(x for x in check.splitlines() if x.startswith(ref + " "))
    assert "complete" in line and line.rstrip().endswith("true"), line  # content complete, unpacked
    out = testenv.ctr("run", "--rm", ref, f"img-{uuid.uuid4().hex[:8]}", namespace=NS)
    assert out.strip() == "from the second layer"


def test_pull_writes_the_labels_a_containerd_pull_writes(
        testenv: Environment, cri: CriClient, pushed: Callable[..., str], layered_image: ImageLayout) -> None:
    ref = pushed(layered_image, "v1")
    image_id = _pull(cri, ref)
    labels = {}
    for line in testenv.ctr("content", "ls", namespace=NS).splitlines()[1:]:
        parts = line.split()
        labels[parts[0]] = dict(kv.split("=", 1) for kv in parts[-1].split(",") if "=" in kv)
    man = labels[layered_image.manifest_digest()]
    assert man["containerd.io/gc.ref.content.config"] == image_id
    assert {"containerd.io/gc.ref.content.l.0", "containerd.io/gc.ref.content.l.1"} <= set(man)
    # containerd's own pull (Transfer on 2.x) appends every repository the blob came from, comma-separated
    repo_path = ref.split("/", 1)[1].rsplit(":", 1)[0]
    line = next(x for x in testenv.ctr("content", "ls", namespace=NS).splitlines()
                if x.startswith(layered_image.manifest_digest()))
    sources = line.split("containerd.io/distribution.source.127.0.0.1=", 1)[1].split()[0]
    assert repo_path in sources.split(","), line
    config = labels[image_id]
    top = config["containerd.io/gc.ref.snapshot.overlayfs"]
    layer0 = labels[man["containerd.io/gc.ref.content.l.0"]]
    assert layer0["containerd.io/uncompressed"].startswith("sha256:")
    snaps = testenv.ctr("snapshots", "ls", namespace=NS)
    assert any(line.startswith(top + " ") and "Committed" in line for line in snaps.splitlines())
    assert "criproxy-pull" not in testenv.ctr("leases", "ls", namespace=NS)  # lease dropped after the pull


def test_pull_by_digest(testenv: Environment, cri: CriClient, pushed: Callable[..., str]) -> None:
    ref = pushed("busybox")
    digest = testenv.images["busybox"].manifest_digest()
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    image_id = _pull(cri, by_digest)
    records = _records(testenv)
    assert records[by_digest] == digest and records[image_id] == digest
    assert ref not in records  # a digest pull records no tag


def test_second_pull_is_instant_and_fetches_no_blob(
        testenv: Environment, cri: CriClient, pushed: Callable[..., str], proxy: RegistryProxy) -> None:
    ref = pushed("busybox").replace(testenv.registry_host, proxy.host)
    _pull(cri, ref)
    first = sum(proxy.blob_gets().values())
    started = time.monotonic()
    _pull(cri, ref)
    assert time.monotonic() - started < 1.0
    assert sum(proxy.blob_gets().values()) == first  # only the manifest was asked for again


@pytest.mark.parametrize(("ref", "code"), [
    ("Not A Reference", grpc.StatusCode.INVALID_ARGUMENT),
    ("busybox@sha256:xyz", grpc.StatusCode.INVALID_ARGUMENT),
    ("", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_malformed_reference_is_invalid_argument(cri: CriClient, ref: str, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as e:
        cri.image.PullImage(cri.pb.PullImageRequest(image=cri.pb.ImageSpec(image=ref)))
    assert e.value.code() == code


def test_unknown_image_is_not_found(testenv: Environment, cri: CriClient) -> None:
    with pytest.raises(grpc.RpcError) as e:
        _pull(cri, f"{testenv.registry_host}/no-such-image-{uuid.uuid4().hex[:6]}:v1")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not found" in (e.value.details() or "")


def test_unknown_tag_is_not_found(cri: CriClient, pushed: Callable[..., str]) -> None:
    ref = pushed("busybox")
    with pytest.raises(grpc.RpcError) as e:
        _pull(cri, ref.rsplit(":", 1)[0] + ":no-such-tag")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_registry_down_is_unavailable(cri: CriClient) -> None:
    from tests.harness.proc import free_port
    with pytest.raises(grpc.RpcError) as e:
        _pull(cri, f"127.0.0.1:{free_port()}/busybox:latest")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in (e.value.details() or "")


def test_pull_trace_shows_containerd_calls_and_progress(
        criproxy_factory: Callable[..., CriproxyProcess], pushed: Callable[..., str]) -> None:
    """criproxy's own client (the Transfer path's trace: test_transfer.py)."""
    criproxy = criproxy_factory(extra_args=["--pull-method", "own"], namespace=f"own-{uuid.uuid4().hex[:8]}")
    ref = pushed("busybox")
    with criproxy.client() as c:
        _pull(c, ref)
    line = next(x for x in reversed(criproxy.log.read_text().splitlines()) if "trace PullImage" in x)
    for call in ("Leases.Create", "Content.Write", "Images.Create", "Leases.Delete"):
        assert call in line, line
    assert f"pulled {ref}" in line and "layers" in line
