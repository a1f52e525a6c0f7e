"""RemoveContainer: kill if running, then task, FIFOs, snapshot, container and its image volumes go;
idempotent.

The log file stays: kubelet owns log files and deletes them itself. Snapshot before container, as
containerd's Go client deletes them.
"""

from __future__ import annotations

from criproxy import nrihooks
from criproxy.app import App
from criproxy.container.task import remove
from criproxy.cri import rpc
from criproxy.protos import cri


@rpc("RemoveContainer")
async def remove_container(app: App, request: cri.RemoveContainerRequest) -> cri.RemoveContainerResponse:
    rec = app.containers.find(request.container_id)
    if rec is not None:
        await remove(app, rec)
        await nrihooks.remove_container_event(app, rec)
    return cri.RemoveContainerResponse()
