"""The CNI config lookup as libcni does it, read only when the files changed, and bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from criproxy.network import cniconf


def _conflist(name: str, plugin: str = "bridge") -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": plugin}]})


def test_first_valid_file_in_lexical_order(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(_conflist("b"))
    (tmp_path / "10-a.conflist").write_text("{not json")
    assert cniconf.find(tmp_path).name == "b"


def test_a_change_in_place_is_seen(tmp_path: Path) -> None:
    f = tmp_path / "10-a.conflist"
    f.write_text(_conflist("first"))
    assert cniconf.find(tmp_path).name == "first"
    f.write_text(_conflist("second-with-a-longer-name"))     # same file, new size and mtime
    assert cniconf.find(tmp_path).name == "second-with-a-longer-name"
    f.unlink()
    with pytest.raises(cniconf.NoNetwork, match="no network config found"):
        cniconf.find(tmp_path)
    (tmp_path / "05-new.conflist").write_text(_conflist("new"))
    assert cniconf.find(tmp_path).name == "new"


def test_a_fifo_named_like_a_conflist_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "00-fifo.conflist")       # opening it would block: it must be skipped
    (tmp_path / "10-a.conflist").write_text(_conflist("a"))
    assert cniconf.find(tmp_path).name == "a"


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "10-big.conflist"
    big.write_text(_conflist("big")[:-1] + ', "pad": "' + "x" * (cniconf.MAX_CONF_BYTES + 10) + '"}')
    with pytest.raises(cniconf.NoNetwork, match="larger than"):
        cniconf.find(tmp_path)


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(cniconf.NoNetwork, match="does not exist"):
        cniconf.find(tmp_path / "nope")
