"""Registry credentials: Basic (htpasswd registry) and Bearer (registry + token service on loopback)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.registry import Registry
from tests.harness.registry_tools import TokenRegistry
from tests.integration.test_observability import http_get

USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module")
def basic_registry(testenv: Environment) -> Iterator[Registry]:
    reg = Registry(testenv.base / "reg-basic", auth=(USER, PASSWORD))
    reg.start()
    reg.push(testenv.images["busybox"], "private/busybox", "v1")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_registry(testenv: Environment) -> Iterator[TokenRegistry]:
    reg = TokenRegistry(testenv.base / "reg-token", auth=(USER, PASSWORD))
    reg.start()
    reg.push(testenv.images["busybox"], "private/busybox", "v1")
    yield reg
    reg.stop()


def _pull(client: CriClient, ref: str, auth: cri.AuthConfig | None = None) -> str:
    req = cri.PullImageRequest(image=cri.ImageSpec(image=ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return str(client.image.PullImage(req).image_ref)


def _fails(client: CriClient, ref: str, auth: cri.AuthConfig | None, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as e:
        _pull(client, ref, auth)
    assert e.value.code() == code, e.value.details()
    return str(e.value.details())


def _remove(client: CriClient, ref: str) -> None:
    client.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))


def test_basic_auth_needs_credentials(cri: CriClient, basic_registry: Registry) -> None:
    ref = basic_registry.ref("private/busybox", "v1")
    msg = _fails(cri, ref, None, grpc.StatusCode.UNAUTHENTICATED)
    assert "credentials" in msg
    _fails(cri, ref, cri.pb.AuthConfig(username=USER, password="wrong"), grpc.StatusCode.UNAUTHENTICATED)


def test_basic_auth_with_username_password(cri: CriClient, basic_registry: Registry) -> None:
    ref = basic_registry.ref("private/busybox", "v1")
    assert _pull(cri, ref, cri.pb.AuthConfig(username=USER, password=PASSWORD)).startswith("sha256:")
    _remove(cri, ref)


def test_basic_auth_with_encoded_auth(cri: CriClient, basic_registry: Registry) -> None:
    ref = basic_registry.ref("private/busybox", "v1")
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert _pull(cri, ref, cri.pb.AuthConfig(auth=encoded)).startswith("sha256:")
    _remove(cri, ref)


def test_bearer_token_flow(cri: CriClient, token_registry: TokenRegistry,
                           criproxy_factory: CriproxyFactory) -> None:
    ref = token_registry.ref("private/busybox", "v1")
    assert _pull(cri, ref, cri.pb.AuthConfig(username=USER, password=PASSWORD)).startswith("sha256:")
    _remove(cri, ref)
    # criproxy's own client: one token for the scope serves the manifest and every blob
    # (containerd's resolver, behind the Transfer service, asks more often)
    own = criproxy_factory(extra_args=["--pull-method", "own"], namespace=f"own-{uuid.uuid4().hex[:8]}")
    with own.client() as c:
        before = token_registry.tokens.requests
        assert _pull(c, ref, cri.pb.AuthConfig(username=USER, password=PASSWORD)).startswith("sha256:")
        assert token_registry.tokens.requests - before == 1


def test_bearer_without_or_with_bad_credentials_is_unauthenticated(
        cri: CriClient, token_registry: TokenRegistry) -> None:
    ref = token_registry.ref("private/busybox", "v1")
    _fails(cri, ref, None, grpc.StatusCode.UNAUTHENTICATED)
    msg = _fails(cri, ref, cri.pb.AuthConfig(username=USER, password="wrong"), grpc.StatusCode.UNAUTHENTICATED)
    assert "token service" in msg


def test_registry_token_is_sent_as_bearer(cri: CriClient, token_registry: TokenRegistry) -> None:
    ref = token_registry.ref("private/busybox", "v1")
    token = token_registry.tokens.sign([{"type": "repository", "name": "private/busybox", "actions": ["pull"]}])
    assert _pull(cri, ref, cri.pb.AuthConfig(registry_token=token)).startswith("sha256:")
    _remove(cri, ref)


def test_identity_token_is_exchanged_for_an_access_token(cri: CriClient, token_registry: TokenRegistry) -> None:
    ref = token_registry.ref("private/busybox", "v1")
    good = cri.pb.AuthConfig(identity_token=token_registry.tokens.refresh_token)
    assert _pull(cri, ref, good).startswith("sha256:")
    _remove(cri, ref)
    _fails(cri, ref, cri.pb.AuthConfig(identity_token="not-the-token"), grpc.StatusCode.UNAUTHENTICATED)


def test_credentials_never_reach_the_log_traces_or_metrics(
        cri: CriClient, criproxy: CriproxyProcess, basic_registry: Registry, token_registry: TokenRegistry) -> None:
    """Operators share debug logs and /traces: no password, Basic value or token may show up there,
    whether the pull succeeds or fails (the criproxy under test logs at debug level)."""
    registry_token = token_registry.tokens.sign(
        [{"type": "repository", "name": "private/busybox", "actions": ["pull"]}])
    refresh = token_registry.tokens.refresh_token
    secrets = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), registry_token, refresh,
               "wr0ng-pw-x", base64.b64encode(f"{USER}:wr0ng-pw-x".encode()).decode()]
    good = [cri.pb.AuthConfig(username=USER, password=PASSWORD), cri.pb.AuthConfig(auth=secrets[1]),
            cri.pb.AuthConfig(registry_token=registry_token), cri.pb.AuthConfig(identity_token=refresh)]
    bad = [cri.pb.AuthConfig(username=USER, password="wr0ng-pw-x"), cri.pb.AuthConfig(auth=secrets[5])]
    for reg in (basic_registry, token_registry):
        ref = reg.ref("private/busybox", "v1")
        for a in bad:
            _fails(cri, ref, a, grpc.StatusCode.UNAUTHENTICATED)
        for a in good if reg is token_registry else good[:2]:
            _pull(cri, ref, a)
            _remove(cri, ref)
    sock = str(criproxy.state / "debug.sock")
    seen = criproxy.log.read_text() + http_get(sock, "/traces")[1] + http_get(sock, "/metrics")[1] \
        + http_get(sock, "/")[1]
    leaked = [s for s in secrets if s in seen]
    assert not leaked, f"credentials found in the log, traces or metrics: {leaked}"


def test_credentials_only_go_to_the_server_they_name(cri: CriClient, basic_registry: Registry) -> None:
    """AuthConfig.server_address scopes the credentials, as containerd's CRI does: credentials for
    another registry (or for the upstream when a mirror answers) are not sent."""
    ref = basic_registry.ref("private/busybox", "v1")
    host = ref.split("/", 1)[0]
    elsewhere = cri.pb.AuthConfig(username=USER, password=PASSWORD, server_address="https://other.example:5000")
    msg = _fails(cri, ref, elsewhere, grpc.StatusCode.UNAUTHENTICATED)
    assert "requires credentials" in msg
    named = cri.pb.AuthConfig(username=USER, password=PASSWORD, server_address=f"http://{host}/v2/")
    assert _pull(cri, ref, named).startswith("sha256:")
    _remove(cri, ref)
