"""Container recovery at start-up, the task events and relist that correct drift, stopping/removing a pod's containers.

Recovery assumptions (written down as containerd's restart.go does):
1. Every CRI container is a containerd container in our namespace labelled
   ``io.cri-containerd.kind=container`` with the metadata extension; anything else is not ours.
2. What happened after creation (started/finished times, exit code, reason) is in the status file
   under ``<root>/containers/<id>.json``, written on each change; a missing file means CREATED.
3. The task tells the rest: RUNNING → re-attach the log pump to the FIFOs (still in the state dir,
   the shim still holds the writers) and wait again; STOPPED → handle the exit we missed; CREATED
   (criproxy died inside StartContainer) → StartError; no task while the file says running → EXITED
   with exit code 255 ("unknown").
4. Sandboxes are recovered first (server.py lists the start steps); a container whose sandbox is
   gone is still listed, so kubelet can remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.container.task import delete_task_retrying, fail_start, handle_exit, remove, resync, stop, watch
from criproxy.images import catalog
from criproxy.io.container import ContainerIO, io_dir
from criproxy.labels import CONTAINER_METADATA, KIND, KIND_CONTAINER
from criproxy.podsandbox import recover as recover_sandboxes
from criproxy.protos import containers_pb, cri, task_events, task_types, tasks_pb
from criproxy.state.container import ContainerRecord, ContainerStatusData
from criproxy.state.lookup import is_object_id
from criproxy.translate import container as t

log = logging.getLogger("criproxy.container.recover")
EXEC_REAP_WAIT = 5.0
EXEC_REAP_ATTEMPTS = 5
UNKNOWN_MESSAGE = "containerd cannot read the task's state (shim not answering)"


PUMP_CLOSE_WAIT = 2.0     # seconds for the log pump threads to write their last records at shutdown
POD_PARALLEL = 8     # one shim serves a whole pod: hundreds of concurrent runc calls into it time out


async def _bounded(coros: list[Any]) -> None:
    sem = asyncio.Semaphore(POD_PARALLEL)

    async def one(c: Any) -> None:
        async with sem:
            await c
    await asyncio.gather(*(one(c) for c in coros))


async def stop_pod_containers(app: App, sandbox_id: str, timeout: int) -> None:
    """Starts in flight settle first: a container that becomes RUNNING after this looked would
    outlive its pod (StartContainer refuses new starts once the pod is stopping)."""
    for r in app.containers.for_sandbox(sandbox_id):
        if r.handles.starting:
            await r.handles.start_settled.wait()
    recs = [r for r in app.containers.for_sandbox(sandbox_id) if r.may_run]
    await _bounded([stop(app, r, float(timeout)) for r in recs])


async def remove_pod_containers(app: App, sandbox_id: str) -> None:
    await _bounded([remove(app, r) for r in app.containers.for_sandbox(sandbox_id)])


async def close_log_pumps(app: App) -> None:
    """On shutdown keep what was read: a half line goes out as a partial record; the shim holds the
    FIFOs, and the next criproxy re-attaches and continues (see recovery)."""
    closing = []
    for rec in app.containers.values():
        if rec.handles.io is not None:
            rec.handles.io.close()
            closing.append(rec.handles.io)
            rec.handles.io = None
    # The pump threads write the last records themselves; the process must not exit under them.
    await asyncio.gather(*(io.wait_closed(PUMP_CLOSE_WAIT) for io in closing))


async def _list_ours(app: App) -> list[containers_pb.Container]:
    flt = f'labels."{KIND}"=={KIND_CONTAINER}'
    return list((await app.ctrd.containers.List(containers_pb.ListContainersRequest(filters=[flt]))).containers)


async def _tasks(app: App) -> dict[str, Any]:
    """Tasks by container ID (containerd 1.6 fills only ``id`` in Tasks.List, later ones both)."""
    return {p.container_id or p.id: p for p in (await app.ctrd.tasks.List(tasks_pb.ListTasksRequest())).tasks}


def _load(app: App, c: containers_pb.Container) -> ContainerRecord | None:
    ext = c.extensions.get(CONTAINER_METADATA)
    if ext is None:
        return None
    try:
        rec = t.record_from_metadata(ext.value, c.created_at.ToNanoseconds())
        spec = json.loads(c.spec.value)
        process = spec.get("process")
        rec.meta = replace(rec.meta, process=json.dumps(process) if isinstance(process, dict) else "")
        rec.handles.applied = t.spec_resources(process, (spec.get("linux") or {}).get("resources"))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("container %s: unreadable metadata (%s); skipped", c.id, e)
        return None
    if rec.id != c.id or not is_object_id(rec.id):
        log.warning("container %r: metadata names ID %r (not this container's, or not 64 hex); skipped",
                    c.id[:80], str(rec.id)[:80])
        return None
    if rec.log_path and (not os.path.isabs(rec.log_path) or os.path.normpath(rec.log_path) != rec.log_path):
        log.warning("container %s: log path %r is not a clean absolute path; no log is written", rec.id,
                    rec.log_path[:200])
        rec.meta = replace(rec.meta, log_path="")
    rec.status = app.containers.load_status(rec.id) or ContainerStatusData()
    rec.handles.snapshotter = c.snapshotter
    sb = app.sandboxes.find(rec.sandbox_id)
    rec.handles.sandbox_config = sb.config if sb is not None else None
    return rec


async def _revive(app: App, rec: ContainerRecord, task: Any) -> None:
    """Bring one record in line with its task (see assumption 3)."""
    s = rec.status
    if task is None:
        if s.started_at and not s.finished_at:
            app.containers.update_message(rec, "task gone while criproxy was down (exit status unknown)")
            app.containers.update_exited(rec, time.time_ns(), 255)
        if s.finished_at:
            rec.handles.exited.set()
        return
    if task.status == task_types.CREATED and not s.finished_at:
        await fail_start(app, rec, errors.Unknown("criproxy restarted while the container was starting"))
    elif task.status == task_types.STOPPED or s.finished_at:
        await handle_exit(app, rec, task.exit_status, task.exited_at.ToNanoseconds())
    else:
        app.containers.update_started(rec, s.started_at or time.time_ns(), task.pid)
        app.containers.update_unknown(rec, task.status == task_types.UNKNOWN, UNKNOWN_MESSAGE)
        cio = ContainerIO(io_dir(app.config.state, rec.id), rec.id, rec.log_path, rec.config.tty, rec.config.stdin)
        await cio.reattach()
        rec.handles.io = cio
        watch(app, rec)


async def recover_containers(app: App) -> None:
    app.containers.status_dir = app.config.root / "containers"
    containers, tasks = await _list_ours(app), await _tasks(app)
    for c in containers:
        rec = _load(app, c)
        if rec is None:
            continue
        app.containers.add(rec)
        app.container_names.reserve(rec.name, rec.id)
        try:
            await _revive(app, rec, tasks.get(rec.id))
        except errors.CriError as e:
            log.warning("container %s: recovery incomplete: %s", rec.id, e)
    log.info("recovered %d containers", len(app.containers))
    leftovers = await asyncio.to_thread(_exec_leftovers, app)
    if leftovers:
        app.spawn(_reap_execs(app, leftovers), "reap-execs")
    else:
        _release_exec_fifos(app)


async def hold_exec_fifos(app: App) -> None:
    """Open every leftover exec FIFO for reading before anything talks to the shims (the first
    start step).

    A criproxy killed inside an exec's Tasks.Start leaves the shim opening the exec's stdout FIFO for
    writing, which blocks until a reader appears, and the shim answers nothing for that pod meanwhile
    (recovery would see its sandbox as not ready). A reader (non-blocking, holding no data) lets that
    start finish; the reaper then kills the process and closes these.
    """
    app.exec_fifos = await asyncio.to_thread(_open_exec_fifos, app.config.state / "containers")


def _open_exec_fifos(root: Path) -> list[int]:
    fds: list[int] = []
    for fifo in root.glob("*/exec/*/*"):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(fifo.lstat().st_mode):
                fds.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    return fds


def _release_exec_fifos(app: App) -> None:
    fds, app.exec_fifos = app.exec_fifos, []
    for fd in fds:
        os.close(fd)


def _exec_leftovers(app: App) -> list[tuple[str, str]]:
    """(container ID, exec ID) of every exec FIFO dir left under the state dir, and the state dirs
    of containers that no longer exist removed (a thread: directory walks are file I/O).

    An exec's FIFO dir is made before Tasks.Exec and removed only after DeleteProcess, so a dir that
    is still here after a restart names every exec process a killed criproxy may have left running.
    """
    root = app.config.state / "containers"
    found: list[tuple[str, str]] = []
    try:
        dirs = list(root.iterdir())
    except FileNotFoundError:
        return found
    known = {r.id for r in app.containers.values()}
    for d in dirs:
        if not is_object_id(d.name) or d.is_symlink() or not d.is_dir():
            continue                     # not a container dir criproxy made: not ours to touch
        if d.name not in known:
            shutil.rmtree(d, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found += [(d.name, e.name) for e in (d / "exec").iterdir() if not e.is_symlink() and e.is_dir()]
    return found


async def _reap_execs(app: App, leftovers: list[tuple[str, str]]) -> None:
    """Kill, reap and delete each exec process left by a killed criproxy (ExecSync probes, streamed
    execs: nobody reads their output any more), then remove its FIFO dir."""
    async def one(container_id: str, exec_id: str) -> None:
        # An exec caught half-started (runc exec still running when criproxy died) refuses the kill
        # and the delete until its start has settled: try again a few times before giving up.
        for attempt in range(EXEC_REAP_ATTEMPTS):
            with contextlib.suppress(errors.CriError):
                await app.ctrd.tasks.Kill(tasks_pb.KillRequest(container_id=container_id, exec_id=exec_id,
                                                               signal=signal.SIGKILL))
                await app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=container_id, exec_id=exec_id),
                                          timeout=EXEC_REAP_WAIT)
            try:
                await app.ctrd.tasks.DeleteProcess(tasks_pb.DeleteProcessRequest(container_id=container_id,
                                                                                 exec_id=exec_id))
                break
            except errors.NotFound:
                break
            except errors.CriError as e:
                if attempt == EXEC_REAP_ATTEMPTS - 1:
                    log.warning("container %s: exec %s left by the previous criproxy: %s", container_id[:12],
                                exec_id[:12], e)
                    return
                await asyncio.sleep(1.0)
        await asyncio.to_thread(shutil.rmtree, app.config.state / "containers" / container_id / "exec" / exec_id,
                                True)
        log.info("container %s: reaped exec %s left by the previous criproxy", container_id[:12], exec_id[:12])
    try:
        await _bounded([one(c, e) for c, e in leftovers])
    finally:
        _release_exec_fifos(app)


async def relist(app: App) -> None:
    """Correct drift: a container we think runs whose task is gone or stopped gets its exit handled;
    an exited container whose task is still there (a delete that failed) gets it deleted."""
    recs = [r for r in app.containers.values() if not r.handles.starting]
    if not recs:
        return
    tasks = await _tasks(app)
    for rec in recs:
        task = tasks.get(rec.id)
        if rec.may_run and (task is None or task.status == task_types.STOPPED):
            await resync(app, rec)
        elif rec.may_run and task is not None:
            app.containers.update_unknown(rec, task.status == task_types.UNKNOWN, UNKNOWN_MESSAGE)
        elif rec.state == cri.CONTAINER_EXITED and task is not None and rec.handles.exited.is_set():
            await delete_task_retrying(app, rec.id, attempts=1)


async def _on_exit(app: App, env: Any) -> None:
    ev = task_events.TaskExit.FromString(env.event.value)
    if ev.id and ev.id != ev.container_id:
        return                                  # an exec process, handled by its ExecSync
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id and rec.status.started_at and not rec.handles.starting:
        app.spawn(handle_exit(app, rec, ev.exit_status, ev.exited_at.ToNanoseconds()), f"exit-{rec.id[:12]}")


async def _on_oom(app: App, env: Any) -> None:
    ev = task_events.TaskOOM.FromString(env.event.value)
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id:
        app.containers.update_oom(rec)


async def _on_event(app: App, env: Any) -> None:
    if env.topic == "/tasks/exit":
        await _on_exit(app, env)
    elif env.topic == "/tasks/oom":
        await _on_oom(app, env)
    elif env.topic.startswith("/images/"):
        catalog.on_event(app, env)


async def relist_all(app: App) -> None:
    """Correct drift after a reconnect or on the timer: containers, then sandboxes, then the image
    cache; one failing does not keep the others from running."""
    try:
        await relist(app)
    finally:
        try:
            await recover_sandboxes.relist_sandboxes(app)
        finally:
            await catalog.relist(app)


def start_relay(app: App) -> None:
    """One containerd subscription whose exit and OOM events update the container cache and whose
    image events the image cache, and the periodic relist (containers, sandboxes, images)."""
    async def handle(env: Any) -> None:
        await _on_event(app, env)

    async def relist_now() -> None:
        await relist_all(app)
    app.spawn(app.relay.run(app.ctrd, handle, relist_now, app.spawn), "events-relay")
    app.spawn(app.relay.relist_forever(relist_now), "events-relist-timer")
    relay = app.relay
    app.observer.gauges.update({
        "events_received": lambda: relay.received_total,    # containerd events taken in
        "events_published": lambda: relay.published_total,  # CRI events sent to subscribers
        "events_dropped": lambda: relay.dropped_total,      # lost to a subscriber too slow
        "events_reconnects": lambda: relay.reconnects,      # containerd event stream re-opened
        "events_subscribers": lambda: len(relay.subscribers),
    })
