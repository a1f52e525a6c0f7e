"""``--registry-config-path`` in containerd's hosts.toml layout: server override, mirrors, fallbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import free_port
from tests.harness.registry_tools import TlsRegistry


def _pull(proc: CriproxyProcess, ref: str) -> str:
    with proc.client() as c:
        return str(c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref))).image_ref)


def _hosts(tmp: Path, host: str, text: str) -> Path:
    d = tmp / "certs.d"
    (d / host).mkdir(parents=True)
    (d / host / "hosts.toml").write_text(text)
    return d


def test_server_override_sends_a_public_name_to_the_local_registry(
        testenv: Environment, tmp_path: Path, pushed: Callable[..., str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ref = pushed("busybox")
    path = ref.split("/", 1)[1]
    cfg = _hosts(tmp_path, "registry.example.test", f'server = "http://{testenv.registry_host}"\n')
    proc = criproxy_factory(["--registry-config-path", str(cfg)], namespace="imghosts")
    assert _pull(proc, f"registry.example.test/{path}").startswith("sha256:")
    assert f"registry.example.test/{path}" in testenv.ctr("images", "ls", "-q", namespace="imghosts")


def test_mirror_first_then_server_when_the_mirror_is_down(
        testenv: Environment, tmp_path: Path, pushed: Callable[..., str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ref = pushed("busybox")
    path = ref.split("/", 1)[1]
    dead = f"127.0.0.1:{free_port()}"
    cfg = _hosts(tmp_path, "mirrored.example.test",
                 f'server = "http://{testenv.registry_host}"\n\n'
                 f'[host."http://{dead}"]\n  capabilities = ["pull", "resolve"]\n')
    proc = criproxy_factory(["--registry-config-path", str(cfg)], namespace="imghosts")
    assert _pull(proc, f"mirrored.example.test/{path}").startswith("sha256:")


def test_mirror_without_resolve_is_not_asked_for_tags(
        testenv: Environment, tmp_path: Path, pushed: Callable[..., str],
        criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ref = pushed("busybox")
    path = ref.split("/", 1)[1]
    cfg = _hosts(tmp_path, "pullonly.example.test",
                 f'server = "http://127.0.0.1:{free_port()}"\n\n'
                 f'[host."http://{testenv.registry_host}"]\n  capabilities = ["pull"]\n')
    proc = criproxy_factory(["--registry-config-path", str(cfg)], namespace="imghosts")
    with pytest.raises(grpc.RpcError) as e:  # tags resolve only on the (dead) server
        _pull(proc, f"pullonly.example.test/{path}")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    digest = testenv.images["busybox"].manifest_digest()  # by digest the pull-only mirror serves it all
    assert _pull(proc, f"pullonly.example.test/{path.rsplit(':', 1)[0]}@{digest}").startswith("sha256:")


@pytest.fixture(scope="module")
def tls_registry(testenv: Environment) -> Iterator[TlsRegistry]:
    reg = TlsRegistry(testenv.base / "reg-tls")
    reg.start()
    reg.push(testenv.images["busybox"], "secure/busybox", "v1")
    yield reg
    reg.stop()


@pytest.mark.parametrize("setting", ["ca", "skip_verify"])
def test_https_registry_with_ca_or_skip_verify(
        tmp_path: Path, tls_registry: TlsRegistry, criproxy_factory: Callable[..., CriproxyProcess],
        setting: str) -> None:
    line = f'ca = "{tls_registry.ca}"' if setting == "ca" else "skip_verify = true"
    cfg = _hosts(tmp_path, tls_registry.host, f'server = "https://{tls_registry.host}"\n{line}\n')
    proc = criproxy_factory(["--registry-config-path", str(cfg)], namespace="imghosts")
    assert _pull(proc, tls_registry.ref("secure/busybox", "v1")).startswith("sha256:")


def test_https_registry_with_unknown_ca_is_unavailable(
        tmp_path: Path, tls_registry: TlsRegistry, criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    cfg = _hosts(tmp_path, tls_registry.host, f'server = "https://{tls_registry.host}"\n')
    proc = criproxy_factory(["--registry-config-path", str(cfg)], namespace="imghosts")
    with pytest.raises(grpc.RpcError) as e:
        _pull(proc, tls_registry.ref("secure/busybox", "v1"))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate" in (e.value.details() or "").lower()
