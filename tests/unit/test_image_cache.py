"""The image cache's bookkeeping (state.image.ImageCatalog) on plain data: records grouped by target,
merged by image ID, dropped names, prebuilt answers forgotten on every change."""

from __future__ import annotations

from criproxy.state.image import ImageCatalog, ImageRecord, LocalImage

ID = "sha256:" + "c" * 64
INDEX = "sha256:" + "1" * 64
MANIFEST = "sha256:" + "2" * 64


def _img(target: str) -> LocalImage:
    return LocalImage(id=ID, target_digest=target, target_media_type="", manifest_digest=MANIFEST, config={},
                      chain_id="sha256:" + "9" * 64, size=10)


def _rec(name: str, target: str, **labels: str) -> ImageRecord:
    return ImageRecord(name=name, target_digest=target, target_media_type="", target_size=1, labels=labels)


def test_records_of_one_image_id_merge_across_targets() -> None:
    cat = ImageCatalog()
    cat.replace_all([_rec("r/a:1", INDEX, x="1"), _rec(ID, INDEX), _rec("r/a@" + MANIFEST, MANIFEST, y="2")],
                    {INDEX: _img(INDEX), MANIFEST: _img(MANIFEST)})
    entry = cat.for_name("r/a:1")
    assert entry is not None and entry.image.id == ID
    assert entry.image.names == sorted(["r/a:1", ID, "r/a@" + MANIFEST])
    assert entry.labels == {"x": "1", "y": "2"}
    assert cat.for_name("r/a@" + MANIFEST) is entry and cat.by_id[ID] is entry
    assert [e.image.id for e in cat.entries()] == [ID]


def test_a_record_without_a_description_shows_no_image() -> None:
    cat = ImageCatalog()
    cat.replace_all([_rec("r/half:1", INDEX)], {})
    assert cat.for_name("r/half:1") is None and cat.entries() == []
    assert "r/half:1" in cat.records                       # kept: the next relist describes it again


def test_drop_and_put_change_the_answers() -> None:
    cat = ImageCatalog()
    cat.replace_all([_rec("r/a:1", INDEX), _rec(ID, INDEX)], {INDEX: _img(INDEX)})
    cat.list_answer, cat.status_answers = b"old", {ID: b"old"}
    gen = cat.generation
    cat.drop("r/a:1")
    assert cat.generation > gen and cat.list_answer is None and cat.status_answers == {}
    assert cat.for_name("r/a:1") is None and cat.by_id[ID].image.names == [ID]
    cat.drop(ID)
    assert cat.by_id == {} and cat.described == {}         # descriptions pruned with their last record
    cat.put(_rec("r/b:2", INDEX), _img(INDEX))
    entry = cat.for_name("r/b:2")
    assert entry is not None and entry.image.repo_tags == ["r/b:2"]


def test_dropping_an_unknown_name_changes_nothing() -> None:
    cat = ImageCatalog()
    cat.replace_all([_rec(ID, INDEX)], {INDEX: _img(INDEX)})
    gen = cat.generation
    cat.drop("r/unknown:1")
    assert cat.generation == gen
