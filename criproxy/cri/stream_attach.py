"""Attach: validate, then hand out a single-use URL on the streaming server.

The client joins the container's stdio when it connects (``criproxy/streaming/attach.py``).
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.cri.stream_exec import check_streams
from criproxy.protos import cri
from criproxy.streaming import new_url
from criproxy.streaming.exec import running_container


@rpc("Attach")
async def attach(app: App, request: cri.AttachRequest) -> cri.AttachResponse:
    check_streams(request)
    rec = running_container(app, request.container_id)
    if rec.handles.io is None:
        raise errors.FailedPrecondition(f"container {rec.id} has no stdio to attach to")
    stored = cri.AttachRequest()
    stored.CopyFrom(request)
    stored.container_id = rec.id
    return cri.AttachResponse(url=await new_url(app, "attach", stored))
