"""UpdateContainerResources: new limits into the stored spec, into the running task, into status.

As containerd's CRI does: fields left zero keep their value; the spec is rewritten (Containers.Update)
so a later start or a recovery sees the new limits, and a running task gets them through Tasks.Update
(OCI LinuxResources JSON). The spec is written before the task, and put back if the task refuses.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import field_mask_pb2

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.oci import container as oc
from criproxy.protos import containers_pb, cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.translate import container as t


def merged(old: cri.LinuxContainerResources, new: cri.LinuxContainerResources) -> cri.LinuxContainerResources:
    """``old`` with every field ``new`` sets (hugepage limits and unified replace as a whole)."""
    out = cri.LinuxContainerResources()
    out.CopyFrom(old)
    if new.hugepage_limits:
        del out.hugepage_limits[:]
    if new.unified:
        out.unified.clear()
    out.MergeFrom(new)
    return out


async def _write_spec(app: App, rec: ContainerRecord, resources: cri.LinuxContainerResources) -> dict[str, Any]:
    c = (await app.ctrd.containers.Get(containers_pb.GetContainerRequest(id=rec.id))).container
    spec = json.loads(c.spec.value)
    wanted = oc.linux_resources(resources, oc.swap_supported(), oc.hugetlb_supported())
    spec["linux"].setdefault("resources", {}).update(wanted)
    c.spec.value = json.dumps(spec, separators=(",", ":")).encode()
    await app.ctrd.containers.Update(containers_pb.UpdateContainerRequest(
        container=c, update_mask=field_mask_pb2.FieldMask(paths=["spec"])))
    res: dict[str, Any] = spec["linux"]["resources"]
    return res


async def _update_task(app: App, rec: ContainerRecord, resources: dict[str, Any]) -> None:
    req = tasks_pb.UpdateTaskRequest(container_id=rec.id)
    req.resources.type_url = t.RESOURCES_TYPE_URL
    req.resources.value = json.dumps(resources, separators=(",", ":")).encode()
    await app.ctrd.tasks.Update(req)


@rpc("UpdateContainerResources")
async def update_container_resources(app: App, request: cri.UpdateContainerResourcesRequest
                                     ) -> cri.UpdateContainerResourcesResponse:
    rec = app.containers.get(request.container_id)
    if rec.state not in (cri.CONTAINER_CREATED, cri.CONTAINER_RUNNING):
        raise errors.FailedPrecondition(f"container {rec.id} is not created or running: cannot update resources")
    old = rec.resources
    new = merged(old, request.linux)
    resources = await _write_spec(app, rec, new)
    if rec.state == cri.CONTAINER_RUNNING:
        try:
            await _update_task(app, rec, resources)
        except errors.CriError:
            await _write_spec(app, rec, old)
            raise
    app.containers.update_resources(rec, new)
    return cri.UpdateContainerResourcesResponse()
