"""RuntimeConfig: the cgroup driver the runtime uses, so the kubelet can follow it.

Kubelets that get UNIMPLEMENTED fall back to their own flag; answering lets them adopt ours.
"""

from __future__ import annotations

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri


@rpc("RuntimeConfig")
async def runtime_config(app: App, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
    driver = cri.SYSTEMD if app.config.resolved_cgroup_driver() == "systemd" else cri.CGROUPFS
    return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(cgroup_driver=driver))
