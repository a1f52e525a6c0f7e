"""SandboxStore: ID prefix lookup, NotFound, generation bumps only on visible changes."""

from __future__ import annotations

import pytest

from criproxy import errors
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord, SandboxStore


def _rec(sid: str) -> SandboxRecord:
    return SandboxRecord(id=sid, name=f"{sid}_n_u_0", config=cri.PodSandboxConfig(), runtime_handler="",
                         created_at=0)


def test_prefix_lookup_and_errors() -> None:
    store = SandboxStore()
    store.add(_rec("abc1"))
    store.add(_rec("abd2"))
    assert store.get("abc").id == "abc1" and store.get("abd2").id == "abd2"
    assert store.find("zz") is None and store.find("") is None
    with pytest.raises(errors.InvalidArgument):
        store.find("ab")
    with pytest.raises(errors.NotFound):
        store.get("zz")


def test_generation() -> None:
    store = SandboxStore()
    rec = _rec("a")
    store.add(rec)
    g = store.generation
    store.set_state(rec, rec.state)          # no change, no bump
    assert store.generation == g
    store.set_state(rec, cri.SANDBOX_READY)
    assert store.generation == g + 1 and rec.ready
    store.remove("missing")
    assert store.generation == g + 1
    store.remove("a")
    assert store.generation == g + 2 and len(store) == 0


def test_pod_file_paths() -> None:
    from pathlib import Path

    rec = _rec("a")
    assert rec.hosts_path is None and rec.shm_path is None
    rec.dir, rec.state_dir = Path("/r/a"), Path("/s/a")
    assert rec.resolv_conf_path == Path("/r/a/resolv.conf") and rec.shm_path == Path("/s/a/shm")
    rec.config.linux.security_context.namespace_options.ipc = cri.NODE
    assert rec.shm_path == Path("/dev/shm")
