"""RemovePodSandbox: stop if needed, remove the pod's containers, then every trace of the sandbox.

Unknown IDs succeed. Like the stop, concurrent calls share one attempt bounded by ``stop_timeout``
(see ``attempt``). After this nothing of the pod remains: no task, container record, snapshot,
netns, IP allocation (CNI DEL ran at stop), /dev/shm mount or files, and its name is free again.
"""

from __future__ import annotations

from criproxy import nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.container import recover as container_recover
from criproxy.cri import rpc, sandbox_stop
from criproxy.podsandbox import attempt
from criproxy.podsandbox import events as sandbox_events
from criproxy.podsandbox import files as sandbox_files
from criproxy.podsandbox import pause as sandbox_pause
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate.sandbox import handler_snapshotter


@rpc("RemovePodSandbox")
async def remove_pod_sandbox(app: App, request: cri.RemovePodSandboxRequest) -> cri.RemovePodSandboxResponse:
    rec = app.sandboxes.find(request.pod_sandbox_id)
    if rec is not None:
        ctrs = app.containers.for_sandbox(rec.id)       # for their NRI RemoveContainer events
        rec.removing, rec.remove_started = attempt.join_or_start(
            app, rec.removing, rec.remove_started, lambda: _remove(app, rec), f"remove-sandbox-{rec.id[:12]}")
        await attempt.wait(app, rec.removing, rec.remove_started, f"removing pod sandbox {rec.id}")
        for ctr in ctrs:
            if app.containers.find(ctr.id) is None:
                await nrihooks.remove_container_event(app, ctr)
        await nrihooks.pod_post_event(app, api.REMOVE_POD_SANDBOX, rec)
    return cri.RemovePodSandboxResponse()


async def _remove(app: App, rec: SandboxRecord) -> None:
    await sandbox_stop.stop(app, rec)
    await container_recover.remove_pod_containers(app, rec.id)
    await sandbox_pause.delete_container(app, rec.id, handler_snapshotter(app.config, rec.runtime_handler))
    sandbox_files.remove(app, rec.id)
    app.sandboxes.remove(rec.id)
    app.sandbox_names.release(rec.name)
    sandbox_events.publish(app, rec, cri.CONTAINER_DELETED_EVENT)
