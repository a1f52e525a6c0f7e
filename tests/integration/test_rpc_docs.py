"""docs/rpc/ matches what criproxy does: the generator reruns against the real containerd and its
``--check`` compares each RPC's containerd calls with the checked-in page."""

from __future__ import annotations

import collections
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_rpc_docs.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_rpc_docs", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_every_cri_rpc_has_a_page_and_an_index_row() -> None:
    gen = _module()
    index = (ROOT / "docs" / "rpc" / "README.md").read_text()
    for _, rpc, _ in gen.all_rpcs():
        page = ROOT / "docs" / "rpc" / f"{rpc}.md"
        assert page.exists(), rpc
        assert f"[{rpc}]({rpc}.md)" in index
        text = page.read_text()
        assert gen.BEGIN in text and "(not written yet)" not in text and "Not driven" not in text, rpc


def test_structure_reads_the_call_table() -> None:
    gen = _module()
    page = (ROOT / "docs" / "rpc" / "StartContainer.md").read_text()
    calls = gen.structure(page)
    assert calls == collections.Counter({"Tasks.Create OK": 1, "Tasks.Start OK": 1})
    dropped = "\n".join(line for line in page.splitlines() if "Tasks.Start" not in line)
    assert gen.structure(dropped) != calls


def test_checked_in_pages_match_a_fresh_recording() -> None:
    res = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert ", 0 differing" in res.stdout
