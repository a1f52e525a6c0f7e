"""The managed containerd's config matches the format of the binary found (1.x: version 2, 2.x: 3)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from criproxy.config import Config
from criproxy.containerd.managed import config_text, parse_version


@pytest.mark.parametrize(("output", "want"), [
    (b"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n", (1, 6)),
    (b"containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n", (1, 7)),
    (b"containerd github.com/containerd/containerd/v2 2.1.9+unknown \n", (2, 1)),
    (b"containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", (1, 7)),
    (b"containerd github.com/containerd/containerd/v2 v2.2.0 1c4457e00facac03ce1d75f7b6777a7a851e5c41\n", (2, 2)),
    (b"", None),
    (b"not containerd at all\n", None),
])
def test_parse_version(output: bytes, want: tuple[int, int] | None) -> None:
    assert parse_version(output) == want


def test_config_for_1x_is_version_2_without_cri(tmp_path: Path) -> None:
    cfg = Config(state=tmp_path / "st", root=tmp_path / "root")
    doc = tomllib.loads(config_text(cfg, (1, 6)))
    assert doc["version"] == 2
    assert doc["disabled_plugins"] == ["io.containerd.grpc.v1.cri"]
    assert doc["grpc"]["address"] == str(tmp_path / "st" / "containerd" / "containerd.sock")
    assert doc["root"] == str(tmp_path / "root" / "containerd")


def test_config_for_17_disables_nri_too(tmp_path: Path) -> None:
    doc = tomllib.loads(config_text(Config(state=tmp_path / "st", root=tmp_path / "root"), (1, 7)))
    assert doc["version"] == 2
    assert set(doc["disabled_plugins"]) == {"io.containerd.grpc.v1.cri", "io.containerd.nri.v1.nri"}


def test_config_for_2x_is_version_3_without_any_cri_part_or_nri(tmp_path: Path) -> None:
    cfg = Config(state=tmp_path / "st", root=tmp_path / "root")
    doc = tomllib.loads(config_text(cfg, (2, 1)))
    assert doc["version"] == 3
    assert set(doc["disabled_plugins"]) == {"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",
                                            "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"}
    assert doc["ttrpc"]["address"] == str(tmp_path / "st" / "containerd" / "containerd.sock.ttrpc")
