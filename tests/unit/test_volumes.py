"""Image VOLUMEs: which get a dir, how a path is looked up inside the image, what a copy keeps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from criproxy import errors
from criproxy.oci import volumes as v


def test_volumes_not_covered_by_cri_mounts() -> None:
    config = {"config": {"Volumes": {"/data": {}, "/cfg/": {}, "rel/dir": {}, "/": {}, "/a/../b": {}}}}
    assert v.image_volumes(config, ["/cfg", "/other"]) == ["/b", "/data", "/rel/dir"]
    assert v.image_volumes({"config": {}}, []) == [] and v.image_volumes({}, []) == []
    many = {"config": {"Volumes": {f"/v{i}": {} for i in range(v.MAX_VOLUMES + 1)}}}
    with pytest.raises(errors.InvalidArgument, match="volumes"):
        v.image_volumes(many, [])


def test_lookup_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real" / "dir").mkdir(parents=True)
    (root / "abs").symlink_to("/real")                       # absolute: from the image's root
    (root / "up").symlink_to("../../../../real")              # .. stops at the image's root
    (root / "loop").symlink_to("loop")
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(str(tmp_path / "outside"))  # a host path means the image's path
    assert v.resolve_in_root(str(root), "/abs/dir") == str(root / "real" / "dir")
    assert v.resolve_in_root(str(root), "/up/dir") == str(root / "real" / "dir")
    assert v.resolve_in_root(str(root), "/escape") is None
    assert v.resolve_in_root(str(root), "/missing/x") is None
    with pytest.raises(errors.InvalidArgument, match="symbolic links"):
        v.resolve_in_root(str(root), "/loop")


def test_copy_keeps_owners_modes_links_and_skips_devices(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "f").write_text("data")
    os.chown(src / "f", 1000, 2000)
    os.chmod(src / "f", 0o640)
    os.chmod(src / "sub", 0o750)
    (src / "sub" / "l").symlink_to("/etc/shadow")
    os.mkfifo(src / "p")
    os.mknod(src / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(src, 0o711)
    dst.mkdir()
    v.copy_tree(str(src), str(dst))
    assert (dst / "f").read_text() == "data"
    st = os.lstat(dst / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o640)
    assert stat.S_IMODE(os.lstat(dst / "sub").st_mode) == 0o750 and stat.S_IMODE(os.lstat(dst).st_mode) == 0o711
    assert os.readlink(dst / "sub" / "l") == "/etc/shadow"     # copied as a link, never followed
    assert stat.S_ISFIFO(os.lstat(dst / "p").st_mode) and not (dst / "dev").exists()


def test_volume_mounts_are_private_rw_binds() -> None:
    assert v.volume_mounts([("/data", "/r/c/volumes/x")]) == [
        {"destination": "/data", "type": "bind", "source": "/r/c/volumes/x", "options": ["rbind", "rprivate", "rw"]}]
