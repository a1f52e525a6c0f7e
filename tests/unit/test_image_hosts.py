"""hosts.toml reading must mean what containerd's config_path means."""

from __future__ import annotations

from pathlib import Path

import pytest

from criproxy import errors
from criproxy.images.hosts import ALL_CAPS, RegistryHost, hosts_for, is_loopback


@pytest.mark.parametrize(("host", "want"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.1.2.3", True),
    ("[::1]:5000", True), ("::1", True), ("10.0.0.1:5000", False), ("registry.example.com", False),
])
def test_is_loopback(host: str, want: bool) -> None:
    assert is_loopback(host) is want


def test_defaults_without_config(tmp_path: Path) -> None:
    assert [h.base for h in hosts_for(tmp_path, "docker.io")] == ["https://registry-1.docker.io/v2"]
    assert [h.base for h in hosts_for(tmp_path, "quay.io")] == ["https://quay.io/v2"]
    assert [h.base for h in hosts_for(tmp_path, "127.0.0.1:5000")] == ["http://127.0.0.1:5000/v2"]
    assert [h.base for h in hosts_for(None, "localhost:5000")] == ["http://localhost:5000/v2"]


def test_mirrors_in_file_order_then_server(tmp_path: Path) -> None:
    d = tmp_path / "docker.io"
    d.mkdir()
    (d / "ca.pem").write_text("")
    (d / "hosts.toml").write_text('''
server = "https://registry-1.docker.io"
skip_verify = false

[host."https://mirror-b.example"]
  capabilities = ["pull"]
  ca = "ca.pem"
  skip_verify = true
  [host."https://mirror-b.example".header]
    x-custom = ["a", "b"]

[host."http://mirror-a.example:5000/prefix"]
  capabilities = ["pull", "resolve"]

[host."https://flat.example/api"]
  override_path = true
''')
    hosts = hosts_for(tmp_path, "docker.io")
    assert [h.base for h in hosts] == ["https://mirror-b.example/v2", "http://mirror-a.example:5000/prefix/v2",
                                       "https://flat.example/api", "https://registry-1.docker.io/v2"]
    assert hosts[0].capabilities == {"pull"} and hosts[0].skip_verify
    assert hosts[0].ca == (str(d / "ca.pem"),)
    assert hosts[0].headers == {"x-custom": "a, b"}
    assert hosts[1].capabilities == {"pull", "resolve"}
    assert hosts[2].capabilities == ALL_CAPS  # containerd: all capabilities when unset
    assert hosts[3].capabilities == ALL_CAPS


def test_default_dir_is_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('[host."https://catch-all.example"]\n')
    assert [h.base for h in hosts_for(tmp_path, "ghcr.io")] == ["https://catch-all.example/v2", "https://ghcr.io/v2"]


def test_docker_cert_layout_without_hosts_toml(tmp_path: Path) -> None:
    d = tmp_path / "private.example:5000"
    d.mkdir()
    for name in ("ca.crt", "client.cert", "client.key"):
        (d / name).write_text("")
    (host,) = hosts_for(tmp_path, "private.example:5000")
    assert host.ca == (str(d / "ca.crt"),)
    assert host.client == ((str(d / "client.cert"), str(d / "client.key")),)


def test_bad_toml_is_invalid_argument(tmp_path: Path) -> None:
    (tmp_path / "quay.io").mkdir()
    (tmp_path / "quay.io" / "hosts.toml").write_text("server = \n")
    with pytest.raises(errors.InvalidArgument, match=r"hosts\.toml"):
        hosts_for(tmp_path, "quay.io")


@pytest.mark.parametrize("text", [
    'header = "X-Token: 1"\n',
    'host = "https://mirror.example"\n',
    '[host."https://mirror.example"]\nclient = [[]]\n',
    '[host."https://mirror.example"]\nheader = 7\n',
    'capabilities = 5\n',
])
def test_wrong_shapes_in_hosts_toml_are_invalid_argument(tmp_path: Path, text: str) -> None:
    """Valid TOML of the wrong shape is the operator's mistake: a clear error naming the file, not
    an unexpected exception (which PullImage would report as UNKNOWN)."""
    (tmp_path / "quay.io").mkdir()
    (tmp_path / "quay.io" / "hosts.toml").write_text(text)
    with pytest.raises(errors.InvalidArgument, match=r"hosts\.toml"):
        hosts_for(tmp_path, "quay.io")


def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    host = RegistryHost(scheme="https", host="quay.io", ca=(str(tmp_path / "no-such-ca.crt"),))
    with pytest.raises(errors.FailedPrecondition, match=r"no-such-ca\.crt"):
        host.ssl_context()
