"""StartContainer: FIFOs and the log pump, then Tasks.Create and Tasks.Start (containerd's order).

A failure leaves the container EXITED with reason StartError and the error as message (what kubelet
shows as the container's last state), and the call fails with the error.
"""

from __future__ import annotations

from criproxy import errors, nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.container.task import fail_start, publish, start_task
from criproxy.cri import rpc
from criproxy.protos import cri

_STATE: dict[int, str] = {cri.CONTAINER_RUNNING: "running", cri.CONTAINER_EXITED: "exited",
                          cri.CONTAINER_UNKNOWN: "unknown"}


@rpc("StartContainer")
async def start_container(app: App, request: cri.StartContainerRequest) -> cri.StartContainerResponse:
    rec = app.containers.get(request.container_id)
    h = rec.handles
    if rec.state != cri.CONTAINER_CREATED or h.starting or h.removing:
        state = "being started" if h.starting else "being removed" if h.removing else _STATE[rec.state]
        raise errors.FailedPrecondition(f"container {rec.id} is {state}, not created")
    sandbox = app.sandboxes.get(rec.sandbox_id)
    if not sandbox.ready or sandbox.stopping is not None:
        raise errors.FailedPrecondition(f"pod sandbox {sandbox.id} of container {rec.id} is not ready")
    rec.handles.starting = True
    try:
        await nrihooks.container_event(app, api.START_CONTAINER, rec)    # a plugin's refusal fails the start
        await start_task(app, rec)
    except BaseException as e:
        await fail_start(app, rec, e)
        raise
    finally:
        rec.handles.starting = False
        rec.handles.start_settled.set()
    publish(app, rec, cri.CONTAINER_STARTED_EVENT)
    await nrihooks.post_event(app, api.POST_START_CONTAINER, rec)
    return cri.StartContainerResponse()
