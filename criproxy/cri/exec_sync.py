"""ExecSync: run a command in a running container and return its output and exit code (probes).

The process is the container's own OCI process with ``args`` replaced (the CRI plugin's rule), its
stdout/stderr drained from FIFOs into memory up to 16 MiB each (the rest is read and dropped, so the
process never blocks on a full pipe). ``timeout`` seconds (0 = none) → the process is killed and the
call fails DEADLINE_EXCEEDED, which kubelet reads as a probe timeout. After the exit, output is
awaited only briefly: a background child that inherited stdout must not hold the call open.
"""

from __future__ import annotations

import asyncio
import os

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.io import exec as process
from criproxy.io.container import ContainerIO
from criproxy.protos import cri
from criproxy.state.container import ContainerRecord

MAX_OUTPUT = 16 * 1024 * 1024
# The reply itself must fit gRPC's 16 MiB message limit: framing and the exit code need a little room.
REPLY_BUDGET = MAX_OUTPUT - 1024
DRAIN_AFTER_EXIT = 1.0


class _Collector:
    def __init__(self) -> None:
        self.out: dict[bytes, bytearray] = {b"stdout": bytearray(), b"stderr": bytearray()}

    def __call__(self, stream: bytes, data: bytes) -> None:
        buf = self.out[stream]
        room = MAX_OUTPUT - len(buf)
        if room > 0:
            buf += data[:room]


async def _run(app: App, rec: ContainerRecord, exec_id: str, cio: ContainerIO, cmd: list[str],
               timeout: float | None) -> int:
    try:
        wait = await process.start(app, rec.id, exec_id, process.exec_process(rec, cmd, tty=False),
                                   stdout=cio.stdout, stderr=cio.stderr, started=cio.release_holders)
    except errors.Unknown as e:         # runc could not start it (no such executable, not allowed…)
        raise errors.FailedPrecondition(f"cannot run {cmd[0][:200]!r} in container {rec.id}: {e}") from None
    try:
        done, _ = await asyncio.wait([wait], timeout=timeout)
        if not done:
            await process.kill(app, rec.id, exec_id, wait)
            raise errors.DeadlineExceeded(f"command {cmd!r} timed out after {timeout:g}s")
        resp = wait.result()
    finally:
        wait.cancel()
    await cio.wait_drained(DRAIN_AFTER_EXIT)
    return int(resp.exit_status)


async def _cleanup(app: App, container_id: str, exec_id: str, cio: ContainerIO, finished: bool) -> None:
    """The call ended without the exit (the caller went away, or Start failed): the process must not
    keep running in the container. Then DeleteProcess and the FIFOs go."""
    try:
        if not finished:
            await process.kill(app, container_id, exec_id)
        await process.delete(app, container_id, exec_id)
    finally:
        cio.remove()


@rpc("ExecSync")
async def exec_sync(app: App, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
    rec = app.containers.get(request.container_id)
    if rec.state != cri.CONTAINER_RUNNING:
        raise errors.FailedPrecondition(f"container {rec.id} is not running")
    if not request.cmd:
        raise errors.InvalidArgument("exec command is empty")
    exec_id = os.urandom(16).hex()
    directory = app.config.state / "containers" / rec.id / "exec" / exec_id
    cio = ContainerIO(directory, exec_id, "", tty=False, stdin=False)
    collect = _Collector()
    cio.listeners.append(collect)
    await cio.create()
    code: int | None = None
    try:
        code = await _run(app, rec, exec_id, cio, list(request.cmd), float(request.timeout) or None)
    finally:
        # The answer does not wait for the clean-up (a probe's latency is kubelet's to measure).
        app.spawn(_cleanup(app, rec.id, exec_id, cio, code is not None), f"exec-cleanup-{exec_id[:8]}")
    out, err = collect.out[b"stdout"], collect.out[b"stderr"]
    err = err[:REPLY_BUDGET // 2] if len(out) + len(err) > REPLY_BUDGET and len(err) > REPLY_BUDGET // 2 else err
    out = out[:REPLY_BUDGET - len(err)]
    return cri.ExecSyncResponse(stdout=bytes(out), stderr=bytes(err), exit_code=code)
