"""StopPodSandbox: stop the pod's containers, then pause and the network (in parallel); idempotent.

Unknown IDs succeed (the kubelet treats cleanup of a missing pod as done). Concurrent calls for one
sandbox share one stop attempt, bounded by ``stop_timeout``: a caller gets DEADLINE_EXCEEDED after
it, and a later call replaces an attempt that overran (a frozen shim) with a fresh one. The network
part (CNI DEL, netns unpin) is remembered once it succeeded and retried by every later call until it
does, so a plugin failing once does not leak an IP.
"""

from __future__ import annotations

import asyncio

from criproxy import nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.container import recover as container_recover
from criproxy.cri import rpc
from criproxy.podsandbox import attempt
from criproxy.podsandbox import events as sandbox_events
from criproxy.podsandbox import files as sandbox_files
from criproxy.podsandbox import network as sandbox_network
from criproxy.podsandbox import pause as sandbox_pause
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord


@rpc("StopPodSandbox")
async def stop_pod_sandbox(app: App, request: cri.StopPodSandboxRequest) -> cri.StopPodSandboxResponse:
    rec = app.sandboxes.find(request.pod_sandbox_id)
    if rec is not None:
        await stop(app, rec)
        for ctr in app.containers.for_sandbox(rec.id):       # NRI: each container's stop, then the pod's
            await nrihooks.stop_container_event(app, ctr)
        await nrihooks.pod_post_event(app, api.STOP_POD_SANDBOX, rec)
    return cri.StopPodSandboxResponse()


async def stop(app: App, rec: SandboxRecord) -> None:
    """Run (or join) the one stop of this sandbox; it survives the caller going away."""
    rec.stopping, rec.stop_started = attempt.join_or_start(
        app, rec.stopping, rec.stop_started, lambda: _stop(app, rec), f"stop-sandbox-{rec.id[:12]}")
    await attempt.wait(app, rec.stopping, rec.stop_started, f"stopping pod sandbox {rec.id}")


async def _stop(app: App, rec: SandboxRecord) -> None:
    """Containers first; then pause and the network side by side — with every container gone
    nothing uses the pod's network, and neither step needs the other."""
    await container_recover.stop_pod_containers(app, rec.id, 0)
    results = await asyncio.gather(_stop_pause(app, rec), sandbox_network.teardown(app, rec),
                                   return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


async def _stop_pause(app: App, rec: SandboxRecord) -> None:
    if rec.ready or rec.pid:
        await sandbox_pause.stop_task(app, rec)
        rec.pid = 0
    sandbox_events.mark_notready(app, rec)
    sandbox_files.unmount_shm(rec)
