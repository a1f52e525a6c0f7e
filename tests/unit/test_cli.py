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
