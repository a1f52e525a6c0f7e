"""StopContainer(timeout): the stop signal, SIGKILL after the timeout, wait for the exit; idempotent.

An unknown ID or a container that is not running succeeds (kubelet calls this freely during
teardown). The call returns once the exit has been handled: status shows EXITED with the exit code.
"""

from __future__ import annotations

from criproxy import nrihooks
from criproxy.app import App
from criproxy.container.task import stop
from criproxy.cri import rpc
from criproxy.protos import cri


@rpc("StopContainer")
async def stop_container(app: App, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
    rec = app.containers.find(request.container_id)
    if rec is not None:
        await stop(app, rec, float(request.timeout))
        await nrihooks.stop_container_event(app, rec)
    return cri.StopContainerResponse()
