"""A container printing as fast as it can: the other CRI calls stay prompt and its log stays exact.

Bounds here are deliberately generous (the machine is shared); ``benchmarks/bench_logs.py`` measures
the real figures against the built-in CRI.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.integration.containers.conftest import Pod, pod_config, wait_for

FLOOD_SECONDS = 8
ROTATE_EVERY = 0.5
CHECK_BYTES = 4 * 1024 * 1024
TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z"


@pytest.fixture
def disk_pod(cri: CriClient, busybox: str) -> Iterator[Pod]:
    """A pod whose log directory is on disk, not the tmpfs scratch dir: a flood writes a lot."""
    logs = Path(tempfile.mkdtemp(prefix="criproxy-flood-", dir="/var/tmp"))
    pod = Pod(cri, pod_config(logs, "flood"), busybox)
    try:
        yield pod
    finally:
        pod.cleanup()
        shutil.rmtree(logs, ignore_errors=True)


def tail_of(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@pytest.mark.parametrize(("args", "line"), [(["yes"], b"y"), (["yes", ""], b"")], ids=["yes", "newlines"])
def test_flood_leaves_rpcs_prompt_and_log_exact(disk_pod: Pod, args: list[str], line: bytes) -> None:
    cid = disk_pod.run(command=args)
    path = disk_pod.log()
    rt = disk_pod.rt
    lat: dict[str, list[float]] = {"Version": [], "ListContainers": []}
    checked = 0
    start = last_rotation = time.monotonic()
    while time.monotonic() - start < FLOOD_SECONDS:
        for name, call in (("Version", lambda: rt.Version(cri.VersionRequest())),
                           ("ListContainers", lambda: rt.ListContainers(cri.ListContainersRequest()))):
            t0 = time.perf_counter()
            call()
            lat[name].append(time.perf_counter() - t0)
        if time.monotonic() - last_rotation >= ROTATE_EVERY:
            # Rotate as kubelet does (rename, ReopenContainerLog): keeps the disk use bounded, and
            # every rotated file must hold whole records only, the flood's lines and nothing else.
            last_rotation = time.monotonic()
            old = path.with_suffix(".1")
            os.rename(path, old)
            rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=cid))
            if checked < 3:
                with old.open("rb") as f:
                    data = f.read(CHECK_BYTES)          # a bounded sample: the file may be huge
                assert data, "the pump wrote nothing in half a second"
                record = re.compile(TS + rb" stdout F " + re.escape(line))
                lines = data[:data.rfind(b"\n")].split(b"\n")
                bad = [x for x in lines if not record.fullmatch(x)]
                assert not bad, bad[:3]
                checked += 1
            old.unlink()
        time.sleep(0.02)
    assert disk_pod.status(cid).state == cri.CONTAINER_RUNNING
    for name, values in lat.items():
        assert p99(values) < 1.0, f"{name} p99 {p99(values) * 1000:.0f} ms while the container floods its log"
    assert checked == 3


def test_flood_then_long_line_then_partial_is_exact(disk_pod: Pod) -> None:
    script = ("yes | head -c 4000000; head -c 40000 /dev/zero | tr '\\0' x; echo; echo err >&2; "
              "printf 'a\\r\\nb\\r\\n'; printf tail")
    cid = disk_pod.run(command=["sh", "-c", script])
    disk_pod.wait_exit(cid, timeout=120)
    # The shim copies stdout and stderr independently: "err" may land before or after "tail".
    wait_for(lambda: b" stdout P tail\n" in tail_of(disk_pod.log()), timeout=30, what="the final record")
    pattern = re.compile(rb"(" + TS + rb") (stdout|stderr) ([FP]) (.*)")
    out = bytearray()
    err: list[tuple[bytes, bytes]] = []
    last_ts = b""
    tail: list[tuple[bytes, int]] = []
    with disk_pod.log().open("rb") as f:
        for raw in f:
            assert raw.endswith(b"\n")
            m = pattern.fullmatch(raw[:-1])
            assert m, raw[:200]
            ts, stream, tag, content = m.groups()
            assert ts[:19] >= last_ts[:19], "timestamps go backwards"
            last_ts = ts
            if stream == b"stderr":
                err.append((tag, content))
                continue
            out += content + (b"\n" if tag == b"F" else b"")
            if len(content) > 2:
                tail.append((tag, len(content)))
    assert bytes(out) == b"y\n" * 2_000_000 + b"x" * 40000 + b"\n" + b"a\nb\n" + b"tail"
    # The 40,000-byte line in 16 KiB pieces, then the unterminated last line as a partial record.
    assert tail == [(b"P", 16384), (b"P", 16384), (b"F", 40000 - 2 * 16384), (b"P", 4)]
    assert err == [(b"F", b"err")]
