"""ReopenContainerLog: after kubelet renamed the log file, the pump starts a fresh one at the path."""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri


@rpc("ReopenContainerLog")
async def reopen_container_log(app: App, request: cri.ReopenContainerLogRequest) -> cri.ReopenContainerLogResponse:
    rec = app.containers.get(request.container_id)
    if rec.state != cri.CONTAINER_RUNNING or rec.handles.io is None:
        raise errors.FailedPrecondition(f"container {rec.id} is not running: its log cannot be reopened")
    try:
        await rec.handles.io.reopen_log()
    except OSError as e:
        raise errors.Internal(f"reopening log {rec.log_path}: {e.strerror}") from None
    return cri.ReopenContainerLogResponse()
