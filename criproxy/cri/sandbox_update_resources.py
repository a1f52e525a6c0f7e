"""UpdatePodSandboxResources: the kubelet's new pod-level overhead and resources, kept with the pod.

What containerd's CRI plugin does (after 2.1; 2.1 does not know the RPC), and so criproxy: it finds the sandbox (NOT_FOUND otherwise),
hands the values to NRI plugins, stores them in the sandbox's status and in its containerd record
(an extension), and writes no cgroup itself: the pod-level cgroup is the kubelet's (the
``cgroup_parent`` it created and sizes), and each container's own limits arrive through
UpdateContainerResources. criproxy has no NRI, so it checks the values (the same rules as
UpdateContainerResources: INVALID_ARGUMENT, nothing stored), writes them into the sandbox's metadata
extension in containerd first (so a restart recovers them; a refusal there changes nothing), then into
the record; PodSandboxStatus ``verbose`` reports them under ``overhead`` and ``resources``.
"""

from __future__ import annotations

from criproxy.app import App
from criproxy.cri import container_update, rpc
from criproxy.labels import SANDBOX_METADATA
from criproxy.protos import containers_pb, cri
from criproxy.translate import sandbox as t


@rpc("UpdatePodSandboxResources")
async def update_pod_sandbox_resources(app: App, request: cri.UpdatePodSandboxResourcesRequest
                                       ) -> cri.UpdatePodSandboxResourcesResponse:
    rec = app.sandboxes.get(request.pod_sandbox_id)
    for part in (request.overhead, request.resources):
        container_update.check_resources(part, container_update.CGROUP_V2)
    old = rec.overhead, rec.resources
    rec.overhead = cri.LinuxContainerResources()
    rec.overhead.CopyFrom(request.overhead)
    rec.resources = cri.LinuxContainerResources()
    rec.resources.CopyFrom(request.resources)
    c = containers_pb.Container(id=rec.id)
    ext = c.extensions[SANDBOX_METADATA]
    ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
    try:
        await app.ctrd.containers.Update(containers_pb.UpdateContainerRequest(
            container=c, update_mask={"paths": [f"extensions.{SANDBOX_METADATA}"]}))
    except BaseException:
        rec.overhead, rec.resources = old
        raise
    return cri.UpdatePodSandboxResourcesResponse()
