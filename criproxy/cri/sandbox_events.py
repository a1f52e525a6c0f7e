"""CRI container events for pod sandboxes, as containerd's CRI plugin sends them for evented PLEG.

The kubelet's evented PLEG learns about pods from GetContainerEvents: a sandbox's creation, start,
stop (pause exited or StopPodSandbox) and deletion are events whose container_id is the sandbox ID,
carrying the pod's status and its containers' statuses. Publishing costs nothing without subscribers.
"""

from __future__ import annotations

import time

from criproxy.app import App
from criproxy.events.relay import relay_of
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import container as tc
from criproxy.translate import sandbox as t


def container_statuses(app: App, sandbox_id: str) -> list[cri.ContainerStatus]:
    return [tc.to_cri_status(r) for r in app.containers.for_sandbox(sandbox_id)]


def publish(app: App, rec: SandboxRecord, kind: int) -> None:
    relay = relay_of(app)
    if not relay.subscribers:
        return
    relay.publish(cri.ContainerEventResponse(
        container_id=rec.id, container_event_type=kind, created_at=time.time_ns(),  # type: ignore[arg-type]
        pod_sandbox_status=t.to_cri_status(rec), containers_statuses=container_statuses(app, rec.id)))


def mark_notready(app: App, rec: SandboxRecord) -> None:
    """READY → NOTREADY once, with its STOPPED event (pause exit and StopPodSandbox both land here)."""
    if rec.ready:
        app.sandboxes.set_state(rec, cri.SANDBOX_NOTREADY)
        publish(app, rec, cri.CONTAINER_STOPPED_EVENT)
    else:
        app.sandboxes.set_state(rec, cri.SANDBOX_NOTREADY)
