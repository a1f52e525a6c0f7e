"""Settings precedence and error messages: what an operator sees when a setting is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from criproxy.config import ConfigError, load


def test_flags_beat_env_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.toml"
    f.write_text('namespace = "file"\nlog_level = "error"\nsnapshotter = "native"\n')
    monkeypatch.setenv("CRIPROXY_NAMESPACE", "env")
    monkeypatch.setenv("CRIPROXY_LOG_LEVEL", "warning")
    cfg = load(f, {"namespace": "flag", "log_level": None})
    assert (cfg.namespace, cfg.log_level, cfg.snapshotter) == ("flag", "warning", "native")


def test_malformed_toml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("namespace = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load(f, {})
    assert "\n" not in str(exc.value)


def test_unknown_key_names_it(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("bogus_setting = 1\n")
    with pytest.raises(ConfigError, match="bogus_setting"):
        load(f, {})


def test_bad_value_names_setting() -> None:
    with pytest.raises(ConfigError, match="managed_containerd"):
        load(None, {"managed_containerd": "sometimes"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", {})


@pytest.mark.parametrize("given", ["0660", "660", "0o660"])
def test_listen_mode_from_flag_or_env_is_octal(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--listen-mode 0660`` means rw-rw----, as with chmod, not decimal 660 (= mode 01224)."""
    assert load(None, {"listen_mode": given}).listen_mode == 0o660
    monkeypatch.setenv("CRIPROXY_LISTEN_MODE", given)
    assert load(None, {}).listen_mode == 0o660


def test_listen_mode_in_toml_and_out_of_range(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("listen_mode = 0o600\n")
    assert load(f, {}).listen_mode == 0o600
    f.write_text("listen_mode = 660\n")          # a decimal integer is not a file mode
    with pytest.raises(ConfigError, match="listen_mode"):
        load(f, {})
    with pytest.raises(ConfigError, match="listen_mode"):
        load(None, {"listen_mode": "0o1777"})
