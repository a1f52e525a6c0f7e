"""UpdateContainerResources: new limits into the stored spec, into the running task, into status.

As containerd's CRI does: fields left zero keep their value; the spec is rewritten (Containers.Update)
so a later start or a recovery sees the new limits, and a running task gets them through Tasks.Update
(OCI LinuxResources JSON). The spec is written before the task, and put back if the task refuses.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from google.protobuf import field_mask_pb2

from criproxy import errors, nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.oci import container as oc
from criproxy.oci import hostfacts
from criproxy.protos import containers_pb, cri, tasks_pb
from criproxy.state.container import ContainerRecord
from criproxy.translate import container as t

_CPUSET = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_PAGE_SIZE = re.compile(r"[0-9]+[KMG]B")
_UNIFIED_KEY = re.compile(r"[a-z0-9_]+\.[a-z0-9_.]+")
CGROUP_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")     # a host fact: read once


def check_resources(r: cri.LinuxContainerResources, cgroup_v2: bool) -> None:
    """Refuse values the OCI types or runc cannot take, before the spec is touched (a refusal from
    runc later would leave nothing changed but reach the caller as an unknown error)."""
    for name in ("cpu_period", "cpu_shares", "memory_limit_in_bytes"):
        if getattr(r, name) < 0:
            raise errors.InvalidArgument(f"{name} must not be negative")
    if r.cpu_quota < -1 or r.memory_swap_limit_in_bytes < -1:
        raise errors.InvalidArgument("cpu_quota and memory_swap_limit_in_bytes must be -1 (unlimited) or more")
    for name in ("cpuset_cpus", "cpuset_mems"):
        value = getattr(r, name)
        if value and not _CPUSET.fullmatch(value):
            raise errors.InvalidArgument(f"{name} {value[:100]!r} is not a list like 0-3,5")
    for h in r.hugepage_limits:
        if not _PAGE_SIZE.fullmatch(h.page_size):
            raise errors.InvalidArgument(f"hugepage page size {h.page_size[:100]!r} is not like 2MB or 1GB")
    if r.unified and not cgroup_v2:
        raise errors.InvalidArgument("unified cgroup resources need cgroup v2; this host has cgroup v1")
    for k, v in r.unified.items():
        if not _UNIFIED_KEY.fullmatch(k) or "\0" in v:
            raise errors.InvalidArgument(f"unified resource {k[:100]!r} is not a cgroup v2 file name with a value")


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
    wanted = oc.linux_resources(resources, hostfacts.swap_supported(), hostfacts.hugetlb_supported())
    spec["linux"].setdefault("resources", {}).update(wanted)
    c.spec.value = json.dumps(spec, separators=(",", ":")).encode()
    await app.ctrd.containers.Update(containers_pb.UpdateContainerRequest(
        container=c, update_mask=field_mask_pb2.FieldMask(paths=["spec"])))
    rec.handles.spec_json = c.spec.value      # what a verbose ContainerStatus shows from now on
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
    if app.nri is not None:       # NRI plugins see the update first and may change it (docs/nri.md)
        wanted = cri.UpdateContainerResourcesRequest()
        wanted.CopyFrom(request)
        wanted.linux.CopyFrom(await nrihooks.update_container(app, rec, request.linux))
        await apply_resources(app, wanted)
        await nrihooks.post_event(app, api.POST_UPDATE_CONTAINER, rec)
    else:
        await apply_resources(app, request)
    return cri.UpdateContainerResourcesResponse()


async def apply_resources(app: App, request: cri.UpdateContainerResourcesRequest) -> None:
    """The update itself: spec, then the running task, rolled back when the task refuses. NRI
    plugins' own updates come here directly (they raise no NRI event)."""
    rec = app.containers.get(request.container_id)
    if rec.state not in (cri.CONTAINER_CREATED, cri.CONTAINER_RUNNING):
        raise errors.FailedPrecondition(f"container {rec.id} is not created or running: cannot update resources")
    check_resources(request.linux, CGROUP_V2)
    old = rec.resources
    new = merged(old, request.linux)
    resources = await _write_spec(app, rec, new)
    if rec.state == cri.CONTAINER_RUNNING:
        try:
            await _update_task(app, rec, resources)
        except errors.CriError as e:
            await _write_spec(app, rec, old)
            if isinstance(e, errors.Unknown):           # runc refused a value (out of the kernel's range…)
                raise errors.InvalidArgument(f"the runtime refused the new resources: {e}") from None
            raise
    rec.handles.applied = t.spec_resources(json.loads(rec.meta.process) if rec.meta.process else None, resources)
    app.containers.update_resources(rec, new)
