"""Status: RuntimeReady and NetworkReady, the two conditions that gate a node.

RuntimeReady comes from a live containerd call with a short deadline, so a dead containerd turns the
node NotReady within seconds; a success is reused for RUNTIME_FRESH seconds (a kubelet, crictl and
probes may ask many times a second), a failure never. NetworkReady looks at the CNI config dir each
time (file stats; a file is parsed again only when it changed), so dropping a conflist in (or
removing it) shows up on the next Status without a restart.
"""

from __future__ import annotations

import json
import time

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.network import cniconf
from criproxy.protos import cri

RUNTIME_DEADLINE = 2.0
RUNTIME_FRESH = 1.0


async def _runtime_condition(app: App) -> cri.RuntimeCondition:
    seen = app.runtime_ready_at
    if seen is None or time.monotonic() - seen > RUNTIME_FRESH:
        app.runtime_ready_at = None
        try:
            app.containerd_version = await app.ctrd.server_version(timeout=RUNTIME_DEADLINE)
        except errors.CriError as e:
            return cri.RuntimeCondition(type="RuntimeReady", status=False, reason="ContainerdUnreachable",
                                        message=str(e))
        app.runtime_ready_at = time.monotonic()
    return cri.RuntimeCondition(type="RuntimeReady", status=True)


def _network_condition(app: App) -> cri.RuntimeCondition:
    try:
        cniconf.find(app.config.cni_conf_dir)
    except cniconf.NoNetwork as e:
        return cri.RuntimeCondition(type="NetworkReady", status=False, reason="NetworkPluginNotReady",
                                    message=f"Network plugin returns error: cni config uninitialized: {e}")
    return cri.RuntimeCondition(type="NetworkReady", status=True)


def _handlers(app: App) -> list[cri.RuntimeHandler]:
    """Recursive read-only mounts as probed at start (oci/rro.py); no user namespaces for pods
    (criproxy does not map them)."""
    names = ["", *sorted(app.config.runtime_handlers)]
    return [cri.RuntimeHandler(name=n, features=cri.RuntimeHandlerFeatures(
        recursive_read_only_mounts=app.rro_support.get(n, False), user_namespaces=False)) for n in names]


def _verbose_info(app: App) -> dict[str, str]:
    cfg = app.config.model_dump(mode="json")
    return {"config": json.dumps(cfg, sort_keys=True),
            "containerd": json.dumps({"version": app.containerd_version, "address": app.ctrd.address,
                                      "namespace": app.ctrd.namespace})}


@rpc("Status")
async def status(app: App, request: cri.StatusRequest) -> cri.StatusResponse:
    runtime, network = await _runtime_condition(app), _network_condition(app)
    resp = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[runtime, network]),
                              runtime_handlers=_handlers(app),
                              features=cri.RuntimeFeatures(supplemental_groups_policy=True))
    if request.verbose:
        resp.info.update(_verbose_info(app))
    return resp
