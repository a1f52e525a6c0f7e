"""RemoveContainer: kill if running, then task, FIFOs, snapshot, container and its image volumes go;
idempotent.

The log file stays: kubelet owns log files and deletes them itself. Snapshot before container, as
containerd's Go client deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.cri.container_create import container_root
from criproxy.cri.container_task import delete_task, publish, remove_files, stop
from criproxy.oci.volumes import remove_container_root
from criproxy.protos import containers_pb, cri, snapshots_pb
from criproxy.state.container import ContainerRecord


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
            snapshotter=app.config.snapshotter, key=rec.id))
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.containers.Delete(containers_pb.DeleteContainerRequest(id=rec.id))
    root = container_root(app, rec.id)
    if root.exists():                                   # only containers with image volumes have one
        await asyncio.to_thread(remove_container_root, root)
    if app.containers.find(rec.id) is rec:
        app.containers.remove(rec.id)
        app.container_names.release_id(rec.id)
        publish(app, rec, cri.CONTAINER_DELETED_EVENT)


@rpc("RemoveContainer")
async def remove_container(app: App, request: cri.RemoveContainerRequest) -> cri.RemoveContainerResponse:
    rec = app.containers.find(request.container_id)
    if rec is not None:
        await remove(app, rec)
    return cri.RemoveContainerResponse()
