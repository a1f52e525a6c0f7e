"""IDs and paths read back from containerd at start-up are checked before they become paths."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from criproxy.labels import SANDBOX_METADATA
from criproxy.podsandbox import recover as recover_sandboxes
from criproxy.protos import containers_pb, cri
from criproxy.state.lookup import is_object_id
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t

GOOD = "ab" * 32


def _container(cid: str, meta_id: str, **kw: Any) -> containers_pb.Container:
    rec = SandboxRecord(id=meta_id, name="n", config=cri.PodSandboxConfig(), runtime_handler="", created_at=1,
                        **kw)
    c = containers_pb.Container(id=cid)
    ext = c.extensions[SANDBOX_METADATA]
    ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
    return c


def test_is_object_id() -> None:
    assert is_object_id(GOOD)
    for bad in ("", GOOD.upper(), GOOD + "\n", GOOD[:-1], "../" + GOOD[3:], GOOD[:-1] + "g"):
        assert not is_object_id(bad), bad


def test_sandbox_metadata_must_name_this_container() -> None:
    assert recover_sandboxes.record_of(_container(GOOD, GOOD)) is not None
    assert recover_sandboxes.record_of(_container(GOOD, "cd" * 32)) is None
    assert recover_sandboxes.record_of(_container("../../etc", "../../etc")) is None


def test_sandbox_dirs_come_from_the_id_not_the_metadata(tmp_path: Path) -> None:
    rec = recover_sandboxes.record_of(_container(GOOD, GOOD, dir=Path("/etc"), state_dir=Path("/")))
    assert rec is not None and rec.dir == Path("/etc")
    app: Any = SimpleNamespace(config=SimpleNamespace(root=tmp_path / "root", state=tmp_path / "state"))
    recover_sandboxes.confine_dirs(app, rec)
    assert rec.dir == tmp_path / "root" / "sandboxes" / GOOD
    assert rec.state_dir == tmp_path / "state" / "sandboxes" / GOOD
