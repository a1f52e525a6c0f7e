"""The pause container and its task: create, start, watch, stop, delete.

The pause image is resolved once and cached (``App.pause_image``); if its snapshot disappeared (image
removed) the cache is dropped and the image ensured again. The container record is created before
its snapshot (no lease needed, see ``prepare_snapshot``), labelled
``io.cri-containerd.kind=sandbox`` with the metadata extension recovery reads. A watcher per pause
task (Tasks.Wait, started before Start) turns the sandbox NOTREADY the moment pause exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal

from criproxy import errors
from criproxy.app import App
from criproxy.images.pull import ensure_image, ensure_unpacked
from criproxy.labels import SANDBOX_METADATA
from criproxy.oci import cgroups
from criproxy.oci.spec import clamp_oom_score_adj, running_in_userns
from criproxy.podsandbox import events as sandbox_events
from criproxy.podsandbox import files as sandbox_files
from criproxy.protos import containers_pb, mount_pb, snapshots_pb, tasks_pb
from criproxy.state.image import LocalImage
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t
from criproxy.translate.sandbox_spec import SANDBOX_OOM_SCORE_ADJ, pause_spec, pod_sysctls

log = logging.getLogger("criproxy.sandbox.pause")
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
STOP_WAIT = 10.0


async def pause_image(app: App, refresh: bool = False) -> LocalImage:
    """The configured pause image, pulled if missing; cached until ``refresh``."""
    cached = app.pause_image
    if cached is None or refresh or cached[0] != app.config.pause_image:
        cached = app.pause_image = (app.config.pause_image, await ensure_image(app, app.config.pause_image))
    return cached[1]


async def prepare_snapshot(app: App, rec: SandboxRecord) -> list[mount_pb.Mount]:
    """The pause rootfs snapshot (key = sandbox ID); the image is re-ensured once if its chain is gone.

    No lease: the container record, created first, already names this snapshot key, and containerd's
    GC keeps every snapshot a container record names (its ``snapshot_key``), so nothing is ever collectable.
    """
    snapshotter = t.handler_snapshotter(app.config, rec.runtime_handler)
    for attempt in (0, 1):
        img = await pause_image(app, refresh=attempt == 1)
        if snapshotter != app.config.snapshotter:       # the handler's own: pause unpacked there too
            await ensure_unpacked(app, img, snapshotter)
        try:
            resp = await app.ctrd.snapshots.Prepare(snapshots_pb.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=rec.id, parent=img.chain_id))
            return list(resp.mounts)
        except errors.NotFound:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def container_record(app: App, rec: SandboxRecord, spec: dict[str, object]) -> containers_pb.Container:
    c = containers_pb.Container(
        id=rec.id, labels=t.container_labels(rec.config), image=rec.image,
        runtime=t.container_runtime(app.config, rec.runtime_handler),
        snapshotter=t.handler_snapshotter(app.config, rec.runtime_handler), snapshot_key=rec.id)
    c.spec.type_url = SPEC_TYPE_URL
    c.spec.value = json.dumps(spec, separators=(",", ":")).encode()
    ext = c.extensions[SANDBOX_METADATA]
    ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
    return c


def build_spec(app: App, rec: SandboxRecord, img: LocalImage) -> dict[str, object]:
    return pause_spec(rec.id, rec.config, img.config, rec.image, rec.netns_path, sandbox_files.files_of(rec),
                      clamp_oom_score_adj(SANDBOX_OOM_SCORE_ADJ, app.oom_score_floor),
                      pod_sysctls(rec.config, app.config.enable_unprivileged_ports,
                                  app.config.enable_unprivileged_icmp, running_in_userns()),
                      cgroups.default_parent(app.ctrd.namespace, t.systemd_cgroup(app.config, rec.runtime_handler)))


async def create_container(app: App, rec: SandboxRecord) -> list[mount_pb.Mount]:
    """Container record, then its snapshot (two calls, no lease); returns the rootfs mounts.

    The record comes first so the snapshot is GC-safe from the moment it exists; a failed Prepare
    removes the record again.
    """
    img = await pause_image(app)
    rec.image = img.record_name
    c = container_record(app, rec, build_spec(app, rec, img))
    await app.ctrd.containers.Create(containers_pb.CreateContainerRequest(container=c))
    rec.runtime = containers_pb.Container.Runtime()   # a copy: not the whole answer kept alive
    rec.runtime.CopyFrom(c.runtime)       # CreateContainer runs the pod's containers on the same
    try:
        return await prepare_snapshot(app, rec)
    except BaseException:
        with contextlib.suppress(errors.CriError):
            await delete_container(app, rec.id, t.handler_snapshotter(app.config, rec.runtime_handler))
        raise


async def start_task(app: App, rec: SandboxRecord, mounts: list[mount_pb.Mount]) -> None:
    """Tasks.Create, the exit watcher, Tasks.Start (Go client's order)."""
    resp = await app.ctrd.tasks.Create(tasks_pb.CreateTaskRequest(container_id=rec.id, rootfs=mounts))
    rec.pid = resp.pid
    watch(app, rec)
    await app.ctrd.tasks.Start(tasks_pb.StartRequest(container_id=rec.id))


def watch(app: App, rec: SandboxRecord) -> None:
    """Start the background Tasks.Wait for this sandbox's pause task."""
    app.spawn(_wait_exit(app, rec), f"sandbox-wait-{rec.id[:12]}")


async def _wait_exit(app: App, rec: SandboxRecord) -> None:
    delay = 0.2
    while True:
        try:
            resp = await app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=rec.id))
            exit_status, exited_at = resp.exit_status, resp.exited_at.ToNanoseconds()
            break
        except errors.NotFound:
            exit_status, exited_at = 255, 0
            break
        except errors.CriError as e:   # containerd restarting: wait again once it is back
            log.debug("waiting for pause task %s: %s", rec.id, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    app.sandboxes.set_exited(rec, exit_status, exited_at)
    sandbox_events.mark_notready(app, rec)


async def stop_task(app: App, rec: SandboxRecord) -> None:
    """SIGKILL pause, wait for it, delete the task; every step tolerates "already gone"."""
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.tasks.Kill(tasks_pb.KillRequest(container_id=rec.id, signal=signal.SIGKILL))
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.tasks.Wait(tasks_pb.WaitRequest(container_id=rec.id), timeout=STOP_WAIT)
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.tasks.Delete(tasks_pb.DeleteTaskRequest(container_id=rec.id))


async def remove_snapshot(app: App, sandbox_id: str, snapshotter: str = "") -> None:
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(
            snapshotter=snapshotter or app.config.snapshotter, key=sandbox_id))


async def delete_container(app: App, sandbox_id: str, snapshotter: str = "") -> None:
    """Snapshot then container record (Go client's order); idempotent."""
    await remove_snapshot(app, sandbox_id, snapshotter)
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.containers.Delete(containers_pb.DeleteContainerRequest(id=sandbox_id))


async def save_network_facts(app: App, rec: SandboxRecord) -> None:
    """Rewrite the metadata extension once the IP is known (CNI ran beside the task start).

    Run in the background after RunPodSandbox answered: network.json already holds the result on
    disk, and recovery reads it when criproxy died before this update landed.
    """
    c = containers_pb.Container(id=rec.id)
    ext = c.extensions[SANDBOX_METADATA]
    ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
    try:
        await app.ctrd.containers.Update(containers_pb.UpdateContainerRequest(
            container=c, update_mask={"paths": [f"extensions.{SANDBOX_METADATA}"]}))
    except errors.NotFound:
        pass   # removed meanwhile
    except errors.CriError as e:
        log.warning("saving network facts of sandbox %s in containerd: %s (network.json has them)", rec.id, e)
