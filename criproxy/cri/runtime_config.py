"""RuntimeConfig: the cgroup driver the runtime uses, so the kubelet can follow it.

Kubelets that get UNIMPLEMENTED fall back to their own flag; answering lets them adopt ours. The
answer is the driver runc is told to use for the default runtime handler (its ``systemd_cgroup``, else
``cgroup_driver``, else detection), so the kubelet's pod cgroups match what runc will do with them.
"""

from __future__ import annotations

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.translate.sandbox import systemd_cgroup


@rpc("RuntimeConfig")
async def runtime_config(app: App, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
    driver = cri.SYSTEMD if systemd_cgroup(app.config, "") else cri.CGROUPFS
    return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(cgroup_driver=driver))
