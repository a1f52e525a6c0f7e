"""Registry auth parsing: challenges, AuthConfig decoding, token answers and the token cache."""

from __future__ import annotations

import base64

import pytest

from criproxy import errors
from criproxy.images.auth import Credentials, TokenCache, from_auth_config, parse_challenges, token_from_response
from criproxy.protos import cri


def test_bearer_challenge() -> None:
    (c,) = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                            'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}


def test_basic_and_multiple_challenges() -> None:
    cs = parse_challenges('Basic realm="criproxy-test", Bearer realm="https://t.example/token",error="x"')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params == {"realm": "criproxy-test"}
    assert cs[1].params["realm"] == "https://t.example/token"


def test_quoted_escapes_and_bare_values() -> None:
    (c,) = parse_challenges(r'Bearer realm="a\"b", service=svc')
    assert c.params == {"realm": 'a"b', "service": "svc"}


def test_auth_config_decoding() -> None:
    assert from_auth_config(None).empty
    creds = from_auth_config(cri.AuthConfig(auth=base64.b64encode(b"u:p:with:colons").decode()))
    assert (creds.username, creds.password) == ("u", "p:with:colons")
    creds = from_auth_config(cri.AuthConfig(username="a", password="b", identity_token="r", registry_token="t"))
    assert creds == Credentials("a", "b", "r", "t")
    assert creds.basic() == "Basic " + base64.b64encode(b"a:b").decode()
    with pytest.raises(errors.InvalidArgument):
        from_auth_config(cri.AuthConfig(auth="***"))


def test_credentials_key_distinguishes_without_revealing() -> None:
    a, b = Credentials("u", "p1"), Credentials("u", "p2")
    assert a.key() != b.key() and "p1" not in a.key()


def test_token_response_shapes() -> None:
    assert token_from_response({"token": "t", "expires_in": 300}) == ("t", 300.0)
    assert token_from_response({"access_token": "t"}) == ("t", 60.0)
    with pytest.raises(errors.Unauthenticated):
        token_from_response({"nope": 1})


def test_token_cache_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("criproxy.state.image.time.monotonic", lambda: now[0])
    cache = TokenCache()
    key = ("realm", "svc", "repository:a:pull", "k")
    cache.put(key, "tok", ttl=60)
    assert cache.get(key) == "tok"
    now[0] += 56  # dropped a little early so a token never expires in flight
    assert cache.get(key) is None


def test_token_cache_is_bounded() -> None:
    cache = TokenCache(max_entries=2)
    keys = [("realm", "svc", f"repository:{n}:pull", "k") for n in "abc"]
    for k in keys:
        cache.put(k, f"tok-{k[2]}", ttl=60)
    assert cache.get(keys[0]) is None and cache.get(keys[2]) == "tok-repository:c:pull"


def test_credentials_scoped_by_server_address() -> None:
    from criproxy.images.auth import Credentials, from_auth_config
    from criproxy.protos import cri

    hub = from_auth_config(cri.AuthConfig(username="u", password="p", server_address="https://index.docker.io/v1/"))
    assert hub.for_host("registry-1.docker.io") is hub
    assert hub.for_host("mirror.local:5000") == Credentials()
    local = from_auth_config(cri.AuthConfig(username="u", password="p", server_address="127.0.0.1:5000"))
    assert local.for_host("127.0.0.1:5000") is local and local.for_host("127.0.0.1:5001").empty
    anywhere = from_auth_config(cri.AuthConfig(username="u", password="p"))
    assert anywhere.for_host("any.host") is anywhere
