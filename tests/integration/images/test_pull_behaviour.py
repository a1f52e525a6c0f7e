"""What users feel: shared downloads, the progress timeout, interrupted pulls, multi-platform indexes."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import run, wait_until
from tests.harness.registry_tools import RegistryProxy, index_layout, with_random_layer

from .conftest import leftovers, run_gc


def _manifest_digest(layout: Path) -> str:
    import json
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def _ns() -> str:
    return f"img-{uuid.uuid4().hex[:8]}"


def _pull(proc: CriproxyProcess, ref: str, timeout: float = 60) -> str:
    with proc.client() as c:
        req = cri.PullImageRequest(image=cri.ImageSpec(image=ref))
        return str(c.image.PullImage(req, timeout=timeout).image_ref)


def _fresh_ref(testenv: Environment, tmp_path: Path, proxy: RegistryProxy, name: str) -> str:
    """A just-built image (one random layer) pushed under ``name``, referenced through the proxy."""
    layout = with_random_layer(testenv.images["busybox"], tmp_path / "unique")
    return testenv.registry.push(layout, name, "unique").replace(testenv.registry_host, proxy.host)


def _nothing_left(testenv: Environment, ns: str) -> None:
    run_gc(testenv, ns)
    left = leftovers(testenv, ns)
    assert left == {"content": [], "ingests": [], "snapshots": [], "leases": [], "images": []}, left


def test_concurrent_pulls_fetch_each_blob_once(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str], proxy: RegistryProxy,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    proc = criproxy_factory(namespace=_ns())  # empty namespace: every blob must really be fetched
    ref = _fresh_ref(testenv, tmp_path, proxy, unique_name("conc"))
    by_digest = f"{ref.rsplit(':', 1)[0]}@{_manifest_digest(tmp_path / 'unique')}"
    proxy.stall()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_pull, proc, r) for r in (ref, ref, by_digest, ref)]
        assert proxy.stalled.wait(30), "the first layer download never started"
        time.sleep(0.5)  # let the other pulls reach the point where they wait for the shared download
        proxy.release()
        ids = {f.result() for f in futures}
    assert len(ids) == 1
    gets = proxy.blob_gets()
    assert gets and all(n == 1 for n in gets.values()), gets


def test_pull_without_progress_is_cancelled_and_leaves_nothing(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str], proxy: RegistryProxy,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ns = _ns()
    proc = criproxy_factory(["--pull-progress-timeout", "1.5"], namespace=ns)
    ref = _fresh_ref(testenv, tmp_path, proxy, unique_name("stall"))
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        _pull(proc, ref)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no bytes received" in (e.value.details() or "")
    assert time.monotonic() - started < 15
    proxy.release()
    _nothing_left(testenv, ns)


def test_pull_killed_half_way_leaves_nothing_after_gc(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str], proxy: RegistryProxy,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ns = _ns()
    proc = criproxy_factory(namespace=ns)
    ref = _fresh_ref(testenv, tmp_path, proxy, unique_name("stall"))
    proxy.stall()
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            _pull(proc, ref)
        except grpc.RpcError as err:
            errors.append(err)
    t = threading.Thread(target=pull)
    t.start()
    assert proxy.stalled.wait(30)
    wait_until(lambda: bool(leftovers(testenv, ns)["ingests"]), 10, "the layer ingest to show")
    held = leftovers(testenv, ns)
    assert held["leases"] and held["content"]  # manifest and config are in, under the pull's lease
    proc.kill()
    t.join(30)
    assert errors
    proxy.release()
    proc.start()  # drops the lease the killed process left behind
    _nothing_left(testenv, ns)


def test_sigterm_during_a_pull_stops_promptly_and_drops_its_lease(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str], proxy: RegistryProxy,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """A graceful stop in the middle of a stalled pull: the caller gets an error, criproxy exits within
    its grace period, and its own shutdown deletes the pull's lease (no restart needed for GC)."""
    ns = _ns()
    proc = criproxy_factory(["--shutdown-grace", "2"], namespace=ns)
    ref = _fresh_ref(testenv, tmp_path, proxy, unique_name("term"))
    proxy.stall()
    failures: list[BaseException] = []

    def pull() -> None:
        try:
            _pull(proc, ref)
        except grpc.RpcError as err:
            failures.append(err)
    t = threading.Thread(target=pull)
    t.start()
    assert proxy.stalled.wait(30)
    wait_until(lambda: bool(leftovers(testenv, ns)["ingests"]), 10, "the layer ingest to show")
    started = time.monotonic()
    assert proc.stop(grace=20) == 0
    assert time.monotonic() - started < 10
    t.join(30)
    assert failures
    assert leftovers(testenv, ns)["leases"] == []
    proxy.release()
    _nothing_left(testenv, ns)


def test_multi_platform_index_picks_linux_amd64(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ns = _ns()
    layout, digests = index_layout(testenv.images["busybox"], tmp_path / "multi")
    ref = f"{testenv.registry_host}/{unique_name('multi')}:multi"
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--dest-tls-verify=false", layout.oci_ref,
         f"docker://{ref}"])
    proc = criproxy_factory(namespace=ns)
    image_id = _pull(proc, ref)
    content = testenv.ctr("content", "ls", namespace=ns)
    index_line = next(x for x in content.splitlines() if x.startswith(digests["index"]))
    content = " ".join(x.split()[0] for x in content.splitlines()[1:])
    for i in range(3):
        assert f"containerd.io/gc.ref.content.m.{i}=" in index_line  # every platform is referenced …
    assert digests["linux/amd64"] in content
    assert digests["linux/arm64"] not in content  # … only this host's manifest is fetched
    assert digests["linux/arm/v7"] not in content
    records = testenv.ctr("images", "ls", namespace=ns)
    assert f"{ref} " in records and digests["index"] in records
    with proc.client() as c:
        img = c.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))).image
    assert img.id == image_id
    assert f"{ref.rsplit(':', 1)[0]}@{digests['index']}" in img.repo_digests
    out = testenv.ctr("run", "--rm", ref, f"multi-{uuid.uuid4().hex[:8]}", "echo", "multi-ok", namespace=ns)
    assert out.strip() == "multi-ok"


def test_manifest_naming_a_huge_layer_as_config_is_refused_before_reading_it(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """A crafted manifest whose config descriptor is an 18 MiB layer containerd already holds: the
    pull is refused on the descriptor's size (RESOURCE_EXHAUSTED), not after loading the layer.
    criproxy's own client (through Transfer, containerd reads the config; test_transfer.py)."""
    import json
    import urllib.request

    proc = criproxy_factory(namespace=_ns(), extra_args=["--pull-method", "own"])
    name = unique_name("bigcfg")
    layout = with_random_layer(testenv.images["busybox"], tmp_path / "big", size=18 * 1024 * 1024)
    ref = testenv.registry.push(layout, name, "unique")
    _pull(proc, ref, timeout=120)              # the big layer is now in containerd's content store
    blobs = tmp_path / "big" / "blobs" / "sha256"
    man = json.loads((blobs / _manifest_digest(tmp_path / "big").split(":")[1]).read_bytes())
    big = man["layers"][-1]
    assert big["size"] > 16 * 1024 * 1024
    evil = {**man, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                              "digest": big["digest"], "size": big["size"]}}
    req = urllib.request.Request(f"http://{testenv.registry_host}/v2/{name}/manifests/evil",
                                 data=json.dumps(evil).encode(), method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
    with pytest.raises(grpc.RpcError) as err:
        _pull(proc, ref.rsplit(":", 1)[0] + ":evil")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert "limit" in (err.value.details() or "")


@pytest.mark.parametrize("point", ["lease", "layer-ingest", "unpacking"])
def test_pull_killed_at_observed_points_leaves_nothing_after_gc(
        point: str, testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """SIGKILL the moment containerd shows the pull's lease, a layer ingest, or an unpack snapshot:
    after the restart (and removing the image if the pull had finished) GC leaves nothing."""
    ns = _ns()
    proc = criproxy_factory(namespace=ns)
    layout = with_random_layer(testenv.images["busybox"], tmp_path / "pts", size=24 * 1024 * 1024)
    ref = testenv.registry.push(layout, unique_name("points"), "unique")
    # An unpack prepares a snapshot first: a new numbered dir of the overlayfs snapshotter (polled
    # directly, faster than ctr, so the apply of a layer is caught while it runs).
    # A layer ingest likewise shows as a dir under the content store's ingest dir (a pull through
    # containerd 2.x's Transfer service moves 24 MiB faster than ctr can list ingests).
    snapdir = testenv.ctrd.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    ingestdir = testenv.ctrd.root / "io.containerd.content.v1.content" / "ingest"
    dirs = len(list(snapdir.iterdir()))
    checks: dict[str, Callable[[], bool]] = {
        "lease": lambda: bool(leftovers(testenv, ns)["leases"]),
        "layer-ingest": lambda: ingestdir.is_dir() and any(ingestdir.iterdir()),
        "unpacking": lambda: len(list(snapdir.iterdir())) > dirs,
    }
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(_pull, proc, ref, 120)
        wait_until(lambda: checks[point]() or fut.done(), 60, f"the pull to reach {point}", 0.002)
        reached = not fut.done()
        proc.kill()
        with contextlib.suppress(grpc.RpcError):
            fut.result(timeout=30)
    proc.start()
    with proc.client() as c:
        c.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    _nothing_left(testenv, ns)
    assert reached, f"the pull finished before {point} was seen: the kill point was never hit"


def test_start_drops_only_its_own_stale_pull_leases(
        testenv: Environment, criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """Two criproxies may share a namespace: at start one deletes the pull leases its killed self left
    (labelled with its CRI socket), never the other's, which may belong to a pull in flight."""
    ns = _ns()
    proc = criproxy_factory(namespace=ns, start=False)
    testenv.ctr("leases", "create", "--id", "pull-mine", f"criproxy.io/pull={proc.socket}", namespace=ns)
    testenv.ctr("leases", "create", "--id", "pull-other", "criproxy.io/pull=/run/other/criproxy.sock",
                namespace=ns)
    proc.start()
    ids = [line.split()[0] for line in leftovers(testenv, ns)["leases"]]
    assert "pull-other" in ids and "pull-mine" not in ids, ids
    testenv.ctr("leases", "rm", "pull-other", namespace=ns)
