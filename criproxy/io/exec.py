"""An exec process in a running container, from its OCI process to its deletion.

One set of steps for ExecSync (``cri/exec_sync.py``) and the streaming Exec (``streaming/exec.py``):
the container's own OCI process with ``args`` replaced (the CRI plugin's rule); Tasks.Exec, then Wait
*before* Start so the exit cannot be missed; SIGKILL and a bounded wait for the reaping when the
caller gives up (DeleteProcess fails on a process that has not been reaped); DeleteProcess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.protos import tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.translate.container import PROCESS_TYPE_URL

if TYPE_CHECKING:
    from criproxy.app import App

REAP_WAIT = 5.0      # seconds to wait for a killed process to be reaped


def exec_process(rec: ContainerRecord, cmd: list[str], tty: bool) -> dict[str, Any]:
    """The OCI process of an exec: the container's, with new args, terminal and (tty) TERM."""
    if not rec.meta.process:
        raise errors.FailedPrecondition(f"container {rec.id} has no process spec")
    proc: dict[str, Any] = json.loads(rec.meta.process)
    proc["args"], proc["terminal"] = list(cmd), tty
    env = list(proc.get("env") or [])
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    proc.pop("consoleSize", None)
    return proc


async def start(app: App, container_id: str, exec_id: str, proc: dict[str, Any], *, stdin: str = "",
                stdout: str = "", stderr: str = "", started: Callable[[], None] = lambda: None
                ) -> asyncio.Future[Any]:
    """Exec, Wait, Start; returns the pending Wait (its result carries ``exit_status``).

    ``started`` runs once Start has returned or failed: the shim has opened its FIFO ends by then, so
    the caller may drop its own holders.
    """
    req = tasks_pb.ExecProcessRequest(container_id=container_id, exec_id=exec_id, terminal=bool(proc["terminal"]),
                                      stdin=stdin, stdout=stdout, stderr=stderr)
    req.spec.type_url = PROCESS_TYPE_URL
    req.spec.value = json.dumps(proc, separators=(",", ":")).encode()
    await app.ctrd.tasks.Exec(req)
    wait = asyncio.ensure_future(app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=container_id,
                                                                          exec_id=exec_id)))
    try:
        await app.ctrd.tasks.Start(tasks_pb.StartRequest(container_id=container_id, exec_id=exec_id))
    except BaseException:
        wait.cancel()
        raise
    finally:
        started()
    return wait


async def kill(app: App, container_id: str, exec_id: str, wait: asyncio.Future[Any] | None = None) -> None:
    """SIGKILL the process and wait (``REAP_WAIT`` at most) until it is reaped; ``wait`` is the pending
    Wait from ``start`` if the caller still has it. Errors are swallowed: it may be gone already."""
    with contextlib.suppress(errors.CriError):
        await app.ctrd.tasks.Kill(tasks_pb.KillRequest(container_id=container_id, exec_id=exec_id,
                                                       signal=signal.SIGKILL))
    if wait is not None:
        await asyncio.wait([wait], timeout=REAP_WAIT)
        return
    with contextlib.suppress(errors.CriError):
        await app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=container_id, exec_id=exec_id),
                                  timeout=REAP_WAIT)


async def delete(app: App, container_id: str, exec_id: str) -> None:
    """DeleteProcess; a process already gone (or a task gone with it) is fine."""
    with contextlib.suppress(errors.CriError):
        await app.ctrd.tasks.DeleteProcess(tasks_pb.DeleteProcessRequest(container_id=container_id,
                                                                         exec_id=exec_id))
