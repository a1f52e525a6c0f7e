"""Pulls through containerd 2.x's Transfer service (``--pull-method transfer``): the records, labels and
snapshots are the ones the own client lands, so every other image and container call works the same;
credentials go back over the daemon's credential stream, hosts.toml is the daemon's to read, errors
keep their classes and a stopped pull leaves nothing behind. On 1.x: the setting is refused clearly and
``auto`` falls back to the own client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.images import ImageLayout
from tests.harness.registry import Registry
from tests.harness.registry_tools import RegistryProxy, TokenRegistry, with_random_layer
from tests.integration.containers.conftest import Pod, container_config, pod_config

from .conftest import leftovers, run_gc

USER, PASSWORD = "carol", "tr4nsfer-pw"
TRANSFER = ["--pull-method", "transfer"]


def _ns() -> str:
    return f"tr-{uuid.uuid4().hex[:8]}"


def _need_2x(testenv: Environment) -> None:
    if testenv.ctrd.major < 2:
        pytest.skip("the Transfer service exists from containerd 2.0")


def _pull(proc: CriproxyProcess, ref: str, auth: cri.AuthConfig | None = None, timeout: float = 120) -> str:
    with proc.client() as c:
        req = cri.PullImageRequest(image=cri.ImageSpec(image=ref))
        if auth is not None:
            req.auth.CopyFrom(auth)
        return str(c.image.PullImage(req, timeout=timeout).image_ref)


def _fails(proc: CriproxyProcess, ref: str, auth: cri.AuthConfig | None, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as e:
        _pull(proc, ref, auth)
    assert e.value.code() == code, e.value.details()
    return str(e.value.details())


def _last_trace(proc: CriproxyProcess) -> str:
    return next(x for x in reversed(proc.log.read_text().splitlines()) if "trace PullImage" in x)


def _records(testenv: Environment, ns: str) -> dict[str, tuple[str, dict[str, str]]]:
    """name → (target digest, labels) of every image record in ``ns``."""
    out = {}
    for line in testenv.ctr("images", "ls", namespace=ns).splitlines()[1:]:
        parts = line.split()
        labels = dict(kv.split("=", 1) for kv in parts[-1].split(",") if "=" in kv)
        out[parts[0]] = (parts[2], labels)
    return out


def _config_digest(layout: ImageLayout) -> str:
    blobs = layout.path / "blobs" / "sha256"
    return str(json.loads((blobs / layout.manifest_digest().split(":")[1]).read_bytes())["config"]["digest"])


def _content_labels(testenv: Environment, ns: str) -> dict[str, dict[str, str]]:
    out = {}
    for line in testenv.ctr("content", "ls", namespace=ns).splitlines()[1:]:
        parts = line.split()
        out[parts[0]] = dict(kv.split("=", 1) for kv in parts[-1].split(",") if "=" in kv)
    return out


def test_transfer_pull_lands_the_own_clients_records_and_runs(
        testenv: Environment, pushed: Callable[..., str], layered_image: ImageLayout,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    _need_2x(testenv)
    ns_t, ns_o = _ns(), _ns()
    proc = criproxy_factory(TRANSFER, namespace=ns_t)
    own = criproxy_factory(["--pull-method", "own"], namespace=ns_o)
    ref = pushed(layered_image, "v1")
    image_id = _pull(proc, ref)
    assert image_id == _config_digest(layered_image)
    line = _last_trace(proc)
    assert "Transfer.Transfer[OK" in line and "Content.Write" not in line and "Diff.Apply" not in line, line
    assert _pull(own, ref) == image_id
    assert "Content.Write" in _last_trace(own)

    # the same records, targets and labels whichever path pulled
    repo = ref.rsplit(":", 1)[0]
    digest = layered_image.manifest_digest()
    via_transfer, via_own = _records(testenv, ns_t), _records(testenv, ns_o)
    assert set(via_transfer) == {ref, f"{repo}@{digest}", image_id}
    assert via_transfer == via_own
    assert all(labels.get("io.cri-containerd.image") == "managed" for _, labels in via_transfer.values())
    # unpacked for the configured snapshotter, the config pointing at the top snapshot
    content = _content_labels(testenv, ns_t)
    top = content[image_id]["containerd.io/gc.ref.snapshot.overlayfs"]
    assert top == _content_labels(testenv, ns_o)[image_id]["containerd.io/gc.ref.snapshot.overlayfs"]
    snaps = testenv.ctr("snapshots", "ls", namespace=ns_t)
    assert any(x.startswith(top + " ") and "Committed" in x for x in snaps.splitlines())
    assert not leftovers(testenv, ns_t)["leases"]          # the pull's lease is gone

    with proc.client() as c:
        for name in (ref, f"{repo}@{digest}", image_id):
            st = c.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=name))).image
            assert st.id == image_id and ref in st.repo_tags and f"{repo}@{digest}" in st.repo_digests, name
        listed = {i.id for i in c.image.ListImages(cri.ListImagesRequest()).images}
        assert image_id in listed
        # a container from it (the pause image came through Transfer too)
        cfg = pod_config(testenv.scratch_dir("logs"), "tr")
        cfg.linux.security_context.namespace_options.network = cri.NODE
        pod = Pod(c, cfg, ref)
        try:
            cid = pod.run(container_config(ref, "c"))
            st = pod.wait_exit(cid)
            assert st.exit_code == 0 and st.image_ref == f"{repo}@{digest}"
            assert (pod.log_dir / "c" / "0.log").read_text().rstrip().endswith("from the second layer")
        finally:
            pod.cleanup()
        c.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    assert not set(_records(testenv, ns_t)) & {ref, f"{repo}@{digest}", image_id}


def test_transfer_pull_by_digest_records_no_tag(
        testenv: Environment, pushed: Callable[..., str], criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    _need_2x(testenv)
    ns = _ns()
    proc = criproxy_factory(TRANSFER, namespace=ns)
    ref = pushed("busybox")
    digest = testenv.images["busybox"].manifest_digest()
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    image_id = _pull(proc, by_digest)
    assert set(_records(testenv, ns)) == {by_digest, image_id}


@pytest.fixture(scope="module")
def basic_registry(testenv: Environment) -> Iterator[Registry]:
    reg = Registry(testenv.base / "reg-basic-tr", auth=(USER, PASSWORD))
    reg.start()
    reg.push(testenv.images["busybox"], "private/busybox", "v1")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_registry(testenv: Environment) -> Iterator[TokenRegistry]:
    reg = TokenRegistry(testenv.base / "reg-token-tr", auth=(USER, PASSWORD))
    reg.start()
    reg.push(testenv.images["busybox"], "private/busybox", "v1")
    yield reg
    reg.stop()


def test_transfer_credentials_go_back_over_the_stream(
        testenv: Environment, basic_registry: Registry, token_registry: TokenRegistry,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    _need_2x(testenv)
    proc = criproxy_factory(TRANSFER, namespace=_ns())
    for reg in (basic_registry, token_registry):
        ref = reg.ref("private/busybox", "v1")
        host = ref.split("/", 1)[0]
        _fails(proc, ref, None, grpc.StatusCode.UNAUTHENTICATED)
        _fails(proc, ref, cri.AuthConfig(username=USER, password="wrong"), grpc.StatusCode.UNAUTHENTICATED)
        elsewhere = cri.AuthConfig(username=USER, password=PASSWORD, server_address="https://other.example:5000")
        _fails(proc, ref, elsewhere, grpc.StatusCode.UNAUTHENTICATED)
        for auth in (cri.AuthConfig(username=USER, password=PASSWORD),
                     cri.AuthConfig(username=USER, password=PASSWORD, server_address=f"http://{host}/v2/")):
            assert _pull(proc, ref, auth).startswith("sha256:")
            assert "Transfer.Transfer[OK" in _last_trace(proc)
            with proc.client() as c:
                c.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    # an identity token is sent as a refresh token; a bare registry token falls back to the own client
    ref = token_registry.ref("private/busybox", "v1")
    assert _pull(proc, ref, cri.AuthConfig(identity_token=token_registry.tokens.refresh_token)).startswith("sha256:")
    assert "Transfer.Transfer[OK" in _last_trace(proc)
    token = token_registry.tokens.sign([{"type": "repository", "name": "private/busybox", "actions": ["pull"]}])
    assert _pull(proc, ref, cri.AuthConfig(registry_token=token)).startswith("sha256:")
    assert "Transfer.Transfer" not in _last_trace(proc)
    assert PASSWORD not in proc.log.read_text()


def test_transfer_reads_the_hosts_directory(
        testenv: Environment, tmp_path: Path, pushed: Callable[..., str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """A public name that hosts.toml sends to the loopback registry over plain http."""
    _need_2x(testenv)
    ns = _ns()
    ref = pushed("busybox")
    path = ref.split("/", 1)[1]
    cfg = tmp_path / "certs.d"
    (cfg / "registry.example.test").mkdir(parents=True)
    (cfg / "registry.example.test" / "hosts.toml").write_text(f'server = "http://{testenv.registry_host}"\n')
    proc = criproxy_factory([*TRANSFER, "--registry-config-path", str(cfg)], namespace=ns)
    assert _pull(proc, f"registry.example.test/{path}").startswith("sha256:")
    assert "Transfer.Transfer[OK" in _last_trace(proc)
    assert f"registry.example.test/{path}" in _records(testenv, ns)


def test_transfer_errors_keep_their_class(
        testenv: Environment, tmp_path: Path, pushed: Callable[..., str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    _need_2x(testenv)
    from tests.harness.proc import free_port
    proc = criproxy_factory(TRANSFER, namespace=_ns())
    ref = pushed("busybox")
    _fails(proc, ref.rsplit(":", 1)[0] + ":no-such-tag", None, grpc.StatusCode.NOT_FOUND)
    msg = _fails(proc, f"127.0.0.1:{free_port()}/busybox:latest", None, grpc.StatusCode.UNAVAILABLE)
    assert "unreachable" in msg


def test_transfer_pull_without_progress_is_cancelled_and_leaves_nothing(
        testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str], proxy: RegistryProxy,
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    """The daemon's progress events feed the stall watchdog; cancelling the transfer drops the lease."""
    _need_2x(testenv)
    ns = _ns()
    proc = criproxy_factory([*TRANSFER, "--pull-progress-timeout", "1.5"], namespace=ns)
    layout = with_random_layer(testenv.images["busybox"], tmp_path / "unique")
    ref = testenv.registry.push(layout, unique_name("stall"), "v1").replace(testenv.registry_host, proxy.host)
    proxy.stall()
    code = _fails(proc, ref, None, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "no bytes received" in code
    proxy.release()
    run_gc(testenv, ns)
    left = leftovers(testenv, ns)
    assert left == {"content": [], "ingests": [], "snapshots": [], "leases": [], "images": []}, left


def test_pull_method_transfer_on_1x_is_refused_and_auto_uses_the_own_client(
        testenv: Environment, pushed: Callable[..., str], criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    if testenv.ctrd.major >= 2:
        pytest.skip("containerd 1.x only")
    ref = pushed("busybox")
    proc = criproxy_factory(TRANSFER, namespace=_ns())
    msg = _fails(proc, ref, None, grpc.StatusCode.FAILED_PRECONDITION)
    assert "Transfer" in msg
    auto = criproxy_factory(["--pull-method", "auto"], namespace=_ns())
    assert _pull(auto, ref).startswith("sha256:")
    assert "Content.Write" in _last_trace(auto)
