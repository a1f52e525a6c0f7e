"""UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR.

criproxy keeps it (in memory and in ``<root>/pod-cidr``, so a restart keeps it before the kubelet
calls again) and passes it to CNI as the ``ipRanges`` runtime capability, which host-local honours
when a plugin declares ``"capabilities": {"ipRanges": true}``. An empty CIDR changes nothing.
"""

from __future__ import annotations

import ipaddress

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.state.files import write_atomic

POD_CIDR_FILE = "pod-cidr"


def load_pod_cidr(app: App) -> str:
    try:
        return (app.config.root / POD_CIDR_FILE).read_text().strip()
    except OSError:
        return ""


def _validate(cidr: str) -> str:
    parts = [c.strip() for c in cidr.split(",") if c.strip()]
    try:
        return ",".join(str(ipaddress.ip_network(c, strict=False)) for c in parts)
    except ValueError as e:
        raise errors.InvalidArgument(f"invalid pod CIDR {cidr!r}: {e}") from None


@rpc("UpdateRuntimeConfig")
async def update_runtime_config(app: App, request: cri.UpdateRuntimeConfigRequest
                                ) -> cri.UpdateRuntimeConfigResponse:
    cidr = request.runtime_config.network_config.pod_cidr
    if cidr:
        cidr = _validate(cidr)
        if cidr != app.pod_cidr:
            app.config.root.mkdir(parents=True, exist_ok=True)
            write_atomic(app.config.root / POD_CIDR_FILE, cidr + "\n")
            app.pod_cidr = cidr
    return cri.UpdateRuntimeConfigResponse()
