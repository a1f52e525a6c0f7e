"""Reading an image's /etc/passwd and /etc/group from snapshot layers: confined to the image, bounded,
never blocking, and with overlay semantics (upper wins, whiteouts, opaque dirs, links across layers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from criproxy import errors
from criproxy.oci import imagefiles
from criproxy.protos import mount_pb

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted xattrs need root")


def layers(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        (tmp_path / n / "etc").mkdir(parents=True)
        out.append(tmp_path / n)
    return out


def read(dirs: list[Path], path: str = "etc/passwd", limit: int = imagefiles.MAX_USER_FILE) -> bytes | None:
    return imagefiles.read_file([str(d) for d in dirs], path, limit)


def test_overlay_mounts_upper_first_then_lowers(tmp_path: Path) -> None:
    upper, top, base = layers(tmp_path, "upper", "top", "base")
    (base / "etc" / "passwd").write_text("old:x:5:5::/:/bin/sh\n")
    (base / "etc" / "group").write_text("g:x:7:\n")
    (top / "etc" / "passwd").write_text(PASSWD)
    m = mount_pb.Mount(type="overlay", source="overlay",
                       options=[f"workdir={tmp_path}/w", f"upperdir={upper}", f"lowerdir={top}:{base}"])
    files = imagefiles.read_user_files([m])
    assert files.passwd == PASSWD and files.group == "g:x:7:\n"
    assert [u.name for u in files.users] == ["root", "app"] and files.groups[0].gid == 7
    bind = mount_pb.Mount(type="bind", source=str(top), options=["rbind", "rw"])
    assert imagefiles.read_user_files([bind]).group == ""


def test_absolute_symlink_resolves_inside_the_image(tmp_path: Path) -> None:
    host = tmp_path / "hostfile"
    host.write_text("host:x:42:42::/:/bin/sh\n")
    (root,) = layers(tmp_path, "root")
    (root / "etc" / "passwd").symlink_to(host)           # absolute: the image has no such path
    assert read([root]) is None
    (root / str(host).lstrip("/")).parent.mkdir(parents=True)
    (root / str(host).lstrip("/")).write_text(PASSWD)     # the image's own file at that path
    assert read([root]) == PASSWD.encode()


def test_dotdot_and_relative_links_stay_in_the_image(tmp_path: Path) -> None:
    (root,) = layers(tmp_path, "root")
    (root / "etc" / "passwd").symlink_to("../../../../../../etc/real")
    assert read([root]) is None                            # /etc/real in the image: absent
    (root / "etc" / "real").write_text(PASSWD)
    assert read([root]) == PASSWD.encode()


def test_dev_zero_link_is_absent_and_a_device_or_fifo_is_refused(tmp_path: Path) -> None:
    (root,) = layers(tmp_path, "root")
    (root / "etc" / "passwd").symlink_to("/dev/zero")
    assert read([root]) is None
    os.mkfifo(root / "etc" / "group")
    with pytest.raises(errors.FailedPrecondition, match="FIFO"):
        read([root], "etc/group")                        # returns at once: never opened for reading
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").mkdir()
    with pytest.raises(errors.FailedPrecondition, match="directory"):
        read([root])


@needs_root
def test_char_device_is_refused(tmp_path: Path) -> None:
    (root,) = layers(tmp_path, "root")
    os.mknod(root / "etc" / "passwd", 0o600 | 0o020000, os.makedev(1, 5))    # /dev/zero's numbers
    with pytest.raises(errors.FailedPrecondition, match="device"):
        read([root])


def test_size_cap(tmp_path: Path) -> None:
    (root,) = layers(tmp_path, "root")
    (root / "etc" / "passwd").write_bytes(b"a" * 101)
    assert read([root], limit=101) == b"a" * 101
    with pytest.raises(errors.ResourceExhausted):
        read([root], limit=100)
    with open(root / "etc" / "group", "wb") as f:       # sparse: costs no disk
        f.truncate(1 << 30)
    with pytest.raises(errors.ResourceExhausted, match="10 MiB"):
        read([root], "etc/group")


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    (root,) = layers(tmp_path, "root")
    (root / "etc" / "passwd").symlink_to("passwd")
    with pytest.raises(errors.FailedPrecondition, match="symbolic links"):
        read([root])


def test_link_in_upper_layer_to_file_in_lower_layer(tmp_path: Path) -> None:
    top, base = layers(tmp_path, "top", "base")
    (base / "data").mkdir()
    (base / "data" / "passwd").write_text(PASSWD)
    (top / "etc" / "passwd").symlink_to("/data/passwd")
    assert read([top, base]) == PASSWD.encode()


def test_directory_link_in_a_lower_layer_is_resolved_in_the_merged_view(tmp_path: Path) -> None:
    top, base = layers(tmp_path, "top", "base")
    (base / "etc").rmdir()
    (base / "etc").symlink_to("/real-etc")                # base: /etc -> /real-etc
    (base / "real-etc").mkdir()
    (base / "real-etc" / "passwd").write_text("base\n")
    (top / "etc").rmdir()
    (top / "real-etc").mkdir()
    (top / "real-etc" / "passwd").write_text(PASSWD)      # top replaces the file behind the link
    assert read([top, base]) == PASSWD.encode()


@needs_root
def test_whiteout_hides_lower_file(tmp_path: Path) -> None:
    top, base = layers(tmp_path, "top", "base")
    (base / "etc" / "passwd").write_text(PASSWD)
    os.mknod(top / "etc" / "passwd", 0o600 | 0o020000, os.makedev(0, 0))
    assert read([top, base]) is None
    assert read([base]) == PASSWD.encode()


@needs_root
def test_opaque_directory_hides_lower_directory(tmp_path: Path) -> None:
    top, base = layers(tmp_path, "top", "base")
    (base / "etc" / "passwd").write_text(PASSWD)
    (base / "etc" / "group").write_text("g:x:1:\n")
    (top / "etc" / "group").write_text("top:x:2:\n")
    assert read([top, base]) == PASSWD.encode()
    os.setxattr(top / "etc", "trusted.overlay.opaque", b"y")
    assert read([top, base]) is None
    assert read([top, base], "etc/group") == b"top:x:2:\n"


def test_file_in_upper_hides_lower_directory(tmp_path: Path) -> None:
    top, base = layers(tmp_path, "top", "base")
    (base / "etc" / "passwd").write_text(PASSWD)
    (top / "etc").rmdir()
    (top / "etc").write_text("not a dir")
    assert read([top, base]) is None
