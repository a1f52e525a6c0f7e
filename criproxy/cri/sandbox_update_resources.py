"""UpdatePodSandboxResources: the kubelet's new pod-level overhead and resources, kept in the pod's config.

The CRI says the call "synchronously updates the PodSandboxConfig with the pod-level resource
configuration", that the kubelet makes it *after* it has resized the pod-level cgroup itself (the
``cgroup_parent`` it owns), and that it is best effort. containerd's CRI plugin (after 2.1; 2.1 does
not know the RPC) finds the sandbox (NOT_FOUND otherwise), hands the values to NRI plugins, stores
them with the sandbox, and writes no cgroup. criproxy (no NRI, no pod cgroup of its own) does the
same: it checks both values with UpdateContainerResources' rules (INVALID_ARGUMENT, nothing stored),
puts them in a copy of the pod's config (``linux.overhead``, ``linux.resources``, each replaced whole
as containerd does), writes that into the sandbox's metadata extension in containerd (so recovery
reads them back; a refusal there leaves the pod's config as it was), then makes the copy the pod's
config. Verbose PodSandboxStatus shows them as ``overhead`` and ``resources`` (and inside ``config``).
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
    old = rec.config
    new = cri.PodSandboxConfig()
    new.CopyFrom(old)
    new.linux.overhead.CopyFrom(request.overhead)
    new.linux.resources.CopyFrom(request.resources)
    rec.config = new                       # for metadata_json; put back if containerd refuses
    try:
        c = containers_pb.Container(id=rec.id)
        ext = c.extensions[SANDBOX_METADATA]
        ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
        await app.ctrd.containers.Update(containers_pb.UpdateContainerRequest(
            container=c, update_mask={"paths": [f"extensions.{SANDBOX_METADATA}"]}))
    except BaseException:
        rec.config = old
        raise
    return cri.UpdatePodSandboxResourcesResponse()
