"""A container's task: start it with FIFOs and the log pump, watch it, handle its exit, kill it.

Shared by StartContainer, StopContainer, RemoveContainer, the event relay, relist and recovery, so
"a container exited" is handled in exactly one place (``handle_exit``): record the exit once, let the
log pump drain (bounded, so a background child holding stdout cannot wedge it), delete the task (as
the CRI plugin does; the exit code lives on in criproxy's status file), then wake StopContainer and
publish CONTAINER_STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from pathlib import Path

from criproxy import errors
from criproxy.app import App
from criproxy.images import imagevolume
from criproxy.io.container import ContainerIO, io_dir
from criproxy.oci.volumes import remove_container_root
from criproxy.podsandbox import events as sandbox_events
from criproxy.protos import containers_pb, cri, snapshots_pb, task_types, tasks_pb
from criproxy.state.container import REASON_START_ERROR, ContainerRecord
from criproxy.translate import container as t

log = logging.getLogger("criproxy.container")
DRAIN_SECONDS = 2.0
START_ERROR_EXIT_CODE = 128


def publish(app: App, rec: ContainerRecord, kind: int) -> None:
    """A CRI container event for this container (``sandbox_events.publish_event``)."""
    sandbox_events.publish_event(app, rec.id, rec.sandbox_id, kind)


def container_dir(app: App, container_id: str) -> str:
    return str(app.config.state / "containers" / container_id)


async def start_task(app: App, rec: ContainerRecord) -> None:
    """FIFOs and pumps first (a reader must exist before Tasks.Create), then Create, Start, watch."""
    cfg = rec.config
    cio = ContainerIO(io_dir(app.config.state, rec.id), rec.id, rec.log_path, cfg.tty, cfg.stdin)
    await cio.create()
    rec.handles.io = cio
    mounts = rec.handles.mounts
    if mounts is None:
        mounts = (await app.ctrd.snapshots.Mounts(snapshots_pb.MountsRequest(
            snapshotter=rec.handles.snapshotter or app.config.snapshotter, key=rec.id))).mounts
    try:
        await app.ctrd.tasks.Create(tasks_pb.CreateTaskRequest(
            container_id=rec.id, rootfs=mounts, stdin=cio.stdin, stdout=cio.stdout, stderr=cio.stderr,
            terminal=cfg.tty))
    finally:
        cio.release_holders()
    resp = await app.ctrd.tasks.Start(tasks_pb.StartRequest(container_id=rec.id))
    app.containers.update_started(rec, time.time_ns(), resp.pid)
    watch(app, rec)


async def fail_start(app: App, rec: ContainerRecord, err: BaseException) -> None:
    """StartError: the container is EXITED with the error as message; the task and FIFOs go away."""
    app.containers.update_exited(rec, time.time_ns(), START_ERROR_EXIT_CODE, REASON_START_ERROR, str(err))
    with contextlib.suppress(errors.CriError):
        await kill(app, rec, signal.SIGKILL, all_processes=True)
    await delete_task_retrying(app, rec.id)
    if rec.handles.io is not None:
        rec.handles.io.remove()
        rec.handles.io = None
    rec.handles.exited.set()
    publish(app, rec, cri.CONTAINER_STOPPED_EVENT)


def watch(app: App, rec: ContainerRecord) -> None:
    app.spawn(_wait(app, rec), f"container-wait-{rec.id[:12]}")


async def _wait(app: App, rec: ContainerRecord) -> None:
    """Tasks.Wait until the init process exits; survives containerd restarts by waiting again."""
    delay = 0.2
    while not rec.handles.exited.is_set():
        try:
            resp = await app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=rec.id))
            await handle_exit(app, rec, resp.exit_status, resp.exited_at.ToNanoseconds())
            return
        except errors.NotFound:
            await resync(app, rec)
            return
        except errors.CriError as e:
            log.debug("waiting for container %s: %s", rec.id, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def handle_exit(app: App, rec: ContainerRecord, exit_code: int, exited_at: int) -> None:
    """Handle an exit once, however many sources report it (Wait, the relay, relist)."""
    if rec.handles.exit_task is None:
        rec.handles.exit_task = asyncio.get_running_loop().create_task(_handle_exit(app, rec, exit_code, exited_at))
    await asyncio.shield(rec.handles.exit_task)


async def _handle_exit(app: App, rec: ContainerRecord, exit_code: int, exited_at: int) -> None:
    if exited_at <= 0:
        exited_at = time.time_ns()
    changed = app.containers.update_exited(rec, exited_at, exit_code)
    if rec.handles.io is not None:
        if not await rec.handles.io.wait_drained(DRAIN_SECONDS):
            log.info("container %s exited but its output is still held open; closing the log pump", rec.id)
        rec.handles.io.close()
        rec.handles.io = None
    await delete_task_retrying(app, rec.id)
    rec.handles.exited.set()
    if changed:
        publish(app, rec, cri.CONTAINER_STOPPED_EVENT)


async def resync(app: App, rec: ContainerRecord) -> None:
    """Compare a container we think is running with its task; handle an exit we missed."""
    try:
        proc = (await app.ctrd.tasks.Get(tasks_pb.GetRequest(container_id=rec.id))).process
    except errors.NotFound:
        if not rec.status.message:
            app.containers.update_message(rec, "task disappeared (exit status unknown)")
        await handle_exit(app, rec, 255, 0)
        return
    if proc.status == task_types.STOPPED:
        await handle_exit(app, rec, proc.exit_status, proc.exited_at.ToNanoseconds())


async def kill(app: App, rec: ContainerRecord, sig: int, all_processes: bool = False) -> bool:
    """Signal the init process (or all); False when the task is already gone."""
    try:
        await app.ctrd.tasks.Kill(tasks_pb.KillRequest(container_id=rec.id, signal=sig, all=all_processes))
        return True
    except errors.NotFound:
        return False


async def delete_task(app: App, container_id: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.tasks.Delete(tasks_pb.DeleteTaskRequest(container_id=container_id))


async def delete_task_retrying(app: App, container_id: str, attempts: int = 4) -> None:
    """Delete an exited task, retrying with backoff; what still fails is left for the relist."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            await delete_task(app, container_id)
            return
        except errors.CriError as e:
            if attempt == attempts - 1:
                log.warning("deleting the exited task of %s failed (%s); the relist retries", container_id, e)
                return
            await asyncio.sleep(delay)
            delay *= 2


async def wait_exited(rec: ContainerRecord, timeout: float) -> bool:
    try:
        await asyncio.wait_for(rec.handles.exited.wait(), timeout)
        return True
    except TimeoutError:
        return False


async def stop(app: App, rec: ContainerRecord, timeout: float) -> None:
    """Stop signal, then SIGKILL (to every process) after ``timeout``, then wait for the exit."""
    if rec.may_run and timeout > 0:
        if await kill(app, rec, t.signal_number(rec.meta.stop_signal)):
            if await wait_exited(rec, timeout):
                return
        else:
            await resync(app, rec)
    if rec.may_run:
        if not await kill(app, rec, signal.SIGKILL, all_processes=True):
            await resync(app, rec)
        if not await wait_exited(rec, 30.0):
            await resync(app, rec)
    if rec.handles.exit_task is not None:
        await asyncio.shield(rec.handles.exit_task)


def remove_files(app: App, rec: ContainerRecord) -> None:
    if rec.handles.io is not None:
        rec.handles.io.remove()
        rec.handles.io = None
    shutil.rmtree(container_dir(app, rec.id), ignore_errors=True)


def container_root(app: App, container_id: str) -> Path:
    """The container's persistent dir (its image volumes), beside its status file."""
    return app.config.root / "containers" / container_id


async def remove(app: App, rec: ContainerRecord) -> None:
    """Everything a container is made of, in reverse order of creation."""
    rec.handles.removing = True
    if rec.handles.starting:                      # let an in-flight StartContainer settle (it ends quickly)
        await rec.handles.start_settled.wait()
    if rec.may_run:
        await stop(app, rec, 0)
    await delete_task(app, rec.id)
    remove_files(app, rec)
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(
            snapshotter=rec.handles.snapshotter or app.config.snapshotter, key=rec.id))
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.containers.Delete(containers_pb.DeleteContainerRequest(id=rec.id))
    root = container_root(app, rec.id)
    if root.exists():                                   # only containers with image volumes have one
        await asyncio.to_thread(remove_container_root, root)
    if rec.meta.image_mounts:                           # the image views no other container mounts
        await imagevolume.release(app, {m[2] for m in rec.meta.image_mounts}, excluding=rec.id)
    if app.containers.find(rec.id) is rec:
        app.containers.remove(rec.id)
        app.container_names.release_id(rec.id)
        publish(app, rec, cri.CONTAINER_DELETED_EVENT)
