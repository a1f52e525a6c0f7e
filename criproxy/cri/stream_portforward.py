"""PortForward: validate, then hand out a single-use URL on the streaming server.

The ports may be given here (WebSocket clients then need not name them) or, as kubelet's SPDY
clients do, per stream when connecting. Forwarding happens inside the pod's network namespace
(``criproxy/streaming/portforward.py``), so the pod must be ready.
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.streaming import new_url
from criproxy.streaming.portforward import netns_of


@rpc("PortForward")
async def port_forward(app: App, request: cri.PortForwardRequest) -> cri.PortForwardResponse:
    if not request.pod_sandbox_id:
        raise errors.InvalidArgument("missing required pod_sandbox_id")
    for port in request.port:
        if not 0 < port < 65536:
            raise errors.InvalidArgument(f"invalid port {port}")
    netns_of(app, request.pod_sandbox_id)
    stored = cri.PortForwardRequest()
    stored.CopyFrom(request)
    stored.pod_sandbox_id = app.sandboxes.get(request.pod_sandbox_id).id
    return cri.PortForwardResponse(url=await new_url(app, "portforward", stored))
