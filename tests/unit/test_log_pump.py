"""The log pump with real FIFOs and files: EOF only after the real writer closes, rotation, recovery."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from criproxy.io.container import ContainerIO


def records(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        _ts, stream, tag, text = line.split(" ", 3)
        out.append((stream, tag, text))
    return out


async def test_pump_writes_cri_log_and_waits_for_real_eof(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "c" / "0.log"
    cio = ContainerIO(tmp_path / "io", "cid", str(log), tty=False, stdin=False)
    await cio.create()
    # Before the "shim" opens its writer, our holder keeps the pumps from seeing EOF.
    assert not await cio.wait_drained(0.05)
    out = os.open(cio.stdout, os.O_WRONLY)
    err = os.open(cio.stderr, os.O_WRONLY)
    cio.release_holders()
    os.write(out, b"hello\npart")
    os.write(err, b"oops\n")
    os.close(out)
    os.close(err)
    assert await cio.wait_drained(2)
    cio.close()
    recs = records(log)
    assert ("stdout", "F", "hello") in recs and ("stdout", "P", "part") in recs and ("stderr", "F", "oops") in recs
    assert oct(log.stat().st_mode & 0o777) == oct(0o640)


async def test_reopen_after_rename_writes_new_file(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    cio = ContainerIO(tmp_path / "io", "cid", str(log), tty=True, stdin=False)
    await cio.create()
    assert cio.stderr == ""
    w = os.open(cio.stdout, os.O_WRONLY)
    cio.release_holders()
    os.write(w, b"before\n")
    await asyncio.sleep(0.05)
    log.rename(tmp_path / "0.log.1")
    await cio.reopen_log()
    os.write(w, b"after\n")
    os.close(w)
    assert await cio.wait_drained(2)
    cio.close()
    assert records(tmp_path / "0.log.1") == [("stdout", "F", "before")]
    assert records(log) == [("stdout", "F", "after")]


async def test_reattach_reads_what_was_buffered(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    first = ContainerIO(tmp_path / "io", "cid", str(log), tty=False, stdin=True)
    await first.create()
    assert first.stdin
    w = os.open(first.stdout, os.O_WRONLY)
    keep_reader = os.open(first.stdout, os.O_RDONLY | os.O_NONBLOCK)   # the shim holds one too
    first.release_holders()
    first.close()                           # criproxy "restarts"
    os.write(w, b"while away\n")
    second = ContainerIO(tmp_path / "io", "cid", str(log), tty=False, stdin=True)
    await second.reattach()
    os.close(w)
    os.close(keep_reader)
    errw = os.open(second.stderr, os.O_WRONLY | os.O_NONBLOCK)
    os.close(errw)
    assert await second.wait_drained(2)
    second.remove()
    assert records(log) == [("stdout", "F", "while away")]
    assert not (tmp_path / "io").exists()


async def test_close_stdin_gives_the_reader_eof(tmp_path: Path) -> None:
    cio = ContainerIO(tmp_path / "io", "cid", "", tty=False, stdin=True)
    await cio.create()
    reader = os.open(cio.stdin, os.O_RDONLY | os.O_NONBLOCK)     # the shim's end
    os.write(cio.stdin_fd, b"x")
    cio.close_stdin()
    assert os.read(reader, 10) == b"x" and os.read(reader, 10) == b""   # no writer left: EOF
    os.close(reader)
    cio.remove()
