"""ContainerStore's sandbox index: kept by add/remove, so for_sandbox never scans every container."""

from __future__ import annotations

from criproxy.protos import cri
from criproxy.state.container import ContainerMetadata, ContainerRecord, ContainerStore


def _rec(cid: str, sid: str) -> ContainerRecord:
    return ContainerRecord(ContainerMetadata(
        id=cid, name=f"{cid}_p_ns_u_0", sandbox_id=sid, config=cri.ContainerConfig(), created_at=0,
        image_name="i", image_id="sha256:x", image_ref="sha256:x"))


def test_index_follows_add_and_remove() -> None:
    store = ContainerStore()
    for cid, sid in [("c1", "podA"), ("c2", "podB"), ("c3", "podA")]:
        store.add(_rec(cid, sid))
    assert [r.id for r in store.for_sandbox("podA")] == ["c1", "c3"]
    assert [r.id for r in store.for_sandbox("podB")] == ["c2"]
    assert store.for_sandbox("podC") == [] and store.for_sandbox("pod") == []
    store.remove("c1")
    store.remove("c1")                      # twice: nothing more changes
    store.remove("unknown")
    assert [r.id for r in store.for_sandbox("podA")] == ["c3"]
    store.remove("c3")
    assert store.for_sandbox("podA") == []
    assert store._by_sandbox == {"podB": {"c2": None}}     # an emptied pod leaves no entry behind


def test_re_adding_an_id_replaces_its_index_entry() -> None:
    store = ContainerStore()
    store.add(_rec("c1", "podA"))
    store.add(_rec("c1", "podB"))           # recovery may re-add a record it rebuilt
    assert store.for_sandbox("podA") == []
    assert [r.id for r in store.for_sandbox("podB")] == ["c1"]
    assert len(store) == 1


def test_many_pods_each_see_only_their_own() -> None:
    store = ContainerStore()
    for i in range(300):
        store.add(_rec(f"c{i}", f"pod{i % 100}"))
    assert all(len(store.for_sandbox(f"pod{p}")) == 3 for p in range(100))
    assert {r.id for r in store.for_sandbox("pod7")} == {"c7", "c107", "c207"}


def test_record_parts_are_typed_without_any() -> None:
    """A record is what was asked, what was observed and the runtime handles, each fully typed."""
    import dataclasses

    from criproxy.state.container import ContainerHandles, ContainerStatusData

    assert [f.name for f in dataclasses.fields(ContainerRecord)] == ["meta", "status", "handles"]
    for cls in (ContainerMetadata, ContainerStatusData, ContainerHandles, ContainerRecord):
        untyped = [f.name for f in dataclasses.fields(cls) if "Any" in str(f.type)]
        assert untyped == [], cls.__name__
    with_meta = _rec("c9", "podZ")
    try:
        with_meta.meta.name = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("metadata must be frozen")
