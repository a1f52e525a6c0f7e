"""The command line fails with one actionable line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criproxy", *args], capture_output=True, text=True, timeout=60)


def test_unknown_flag() -> None:
    r = run("serve", "--no-such-flag")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "--no-such-flag" in r.stderr and "Traceback" not in r.stderr


def test_malformed_config(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("listen = \n")
    r = run("serve", "--config", str(f))
    assert r.returncode == 2
    assert "not valid TOML" in r.stderr and r.stderr.strip().count("\n") == 0


def test_unreachable_containerd_without_managed_mode(tmp_path: Path) -> None:
    r = run("serve", "--managed-containerd", "never", "--listen", str(tmp_path / "c.sock"),
            "--containerd-address", str(tmp_path / "none.sock"), "--startup-timeout", "0.5")
    assert r.returncode == 1
    assert "cannot reach containerd" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_version_command() -> None:
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("criproxy ")


def test_version_flag() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("criproxy ") and r.stdout.strip() == run("version").stdout.strip()


def test_every_serve_flag_is_described() -> None:
    from criproxy.config import FIELD_HELP, Config

    assert set(FIELD_HELP) <= set(Config.model_fields), "FIELD_HELP names a setting that is gone"
    r = run("serve", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps long lines
    for name, field in Config.model_fields.items():
        assert field.description, f"setting {name} has no description (add it to config.FIELD_HELP)"
        if name == "runtime_handlers":
            continue  # a table: config file only
        flag = "--" + name.replace("_", "-").removesuffix("s") if name in ("cni_bin_dirs", "cdi_spec_dirs") else \
            "--" + name.replace("_", "-")
        assert flag in text, flag
        assert " ".join(field.description.split()) in text, name
    assert "(default 0660)" in text  # a mode is shown as chmod takes it, not as decimal 432
