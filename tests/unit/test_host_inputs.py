"""Host files a CRI request names (a Localhost seccomp profile, a device directory) are read bounded.

The request chooses the path, so a FIFO, a device, a huge file or the root directory must give a
clear InvalidArgument instead of hanging, flooding or walking the whole host.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from criproxy import errors
from criproxy.oci import hostfacts
from criproxy.protos import cri


def test_localhost_profile_is_read(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    assert hostfacts.load_localhost_seccomp(str(p)) == {"defaultAction": "SCMP_ACT_ALLOW"}


def test_localhost_profile_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                       # no writer: a blocking open or read would hang the test
    with pytest.raises(errors.InvalidArgument, match="not a regular file"):
        hostfacts.load_localhost_seccomp(str(fifo))


@pytest.mark.parametrize("path", ["/dev/zero", "/proc/self"])
def test_localhost_profile_device_or_dir_is_refused(path: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="not a regular file"):
        hostfacts.load_localhost_seccomp(path)


def test_localhost_profile_too_large_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(11 << 20)              # sparse: 11 MiB over a 10 MiB cap
    with pytest.raises(errors.InvalidArgument, match="larger than"):
        hostfacts.load_localhost_seccomp(str(big))


def test_localhost_profile_must_be_an_object(tmp_path: Path) -> None:
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    with pytest.raises(errors.InvalidArgument, match="not a JSON object"):
        hostfacts.load_localhost_seccomp(str(p))


def test_device_directory_walk_is_bounded(tmp_path: Path) -> None:
    for i in range(hostfacts.MAX_DEVICE_DIR_ENTRIES + 1):
        (tmp_path / f"f{i}").touch()
    dev = cri.Device(host_path=str(tmp_path), container_path="/dev/x", permissions="rwm")
    with pytest.raises(errors.InvalidArgument, match="more than"):
        hostfacts.cri_devices([dev])


def test_small_device_directory_keeps_its_devices(tmp_path: Path) -> None:
    os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))   # we run as root
    (tmp_path / "plain").touch()                                          # not a device: skipped
    dev = cri.Device(host_path=str(tmp_path), container_path="/dev/x", permissions="rwm")
    devs, _rules = hostfacts.cri_devices([dev])
    assert [(d["path"], d["type"], d["major"], d["minor"]) for d in devs] == [("/dev/x/null", "c", 1, 3)]


def test_read_regular_reads_exactly_and_refuses_the_rest(tmp_path: Path) -> None:
    from criproxy.hostfile import HostFileError, read_regular
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    assert read_regular(f, 100) == b"x" * 100
    with pytest.raises(HostFileError, match="larger than 99 bytes"):
        read_regular(f, 99)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(HostFileError, match="not a regular file"):
        read_regular(fifo, 100)
    with pytest.raises(FileNotFoundError):          # callers decide what a missing file means
        read_regular(tmp_path / "missing", 100)
