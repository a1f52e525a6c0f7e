"""CRI container events for pod sandboxes, as containerd's CRI plugin sends them for evented PLEG.

The kubelet's evented PLEG learns about pods from GetContainerEvents: a sandbox's creation, start,
stop (pause exited or StopPodSandbox) and deletion are events whose container_id is the sandbox ID,
carrying the pod's status and its containers' statuses. Publishing costs nothing without subscribers.
"""

from __future__ import annotations

import time

from criproxy.app import App
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import container as tc
from criproxy.translate import sandbox as t


def container_statuses(app: App, sandbox_id: str) -> list[cri.ContainerStatus]:
    """Every container's status in the pod (each built once per change of its record)."""
    return [tc.status_response(r).status for r in app.containers.for_sandbox(sandbox_id)]


def publish_event(app: App, container_id: str, sandbox_id: str, kind: int,
                  sandbox: SandboxRecord | None = None) -> None:
    """The one publisher of CRI container events, for sandboxes and containers alike: the event with
    the pod's status and all its containers' statuses (a pod already gone from the cache has only its
    ID). ``sandbox`` is the record when the caller holds it (it may have left the cache)."""
    relay = app.relay
    if not relay.subscribers:
        return
    sb = sandbox if sandbox is not None else app.sandboxes.find(sandbox_id)
    pod = t.to_cri_status(sb) if sb is not None else cri.PodSandboxStatus(id=sandbox_id)
    relay.publish(cri.ContainerEventResponse(
        container_id=container_id, container_event_type=kind, created_at=time.time_ns(),  # type: ignore[arg-type]
        pod_sandbox_status=pod, containers_statuses=container_statuses(app, sandbox_id)))


def publish(app: App, rec: SandboxRecord, kind: int) -> None:
    """A sandbox's own event: its container_id is the sandbox ID."""
    publish_event(app, rec.id, rec.id, kind, rec)


def mark_notready(app: App, rec: SandboxRecord) -> None:
    """READY → NOTREADY once, with its STOPPED event (pause exit and StopPodSandbox both land here)."""
    if rec.ready:
        app.sandboxes.set_state(rec, cri.SANDBOX_NOTREADY)
        publish(app, rec, cri.CONTAINER_STOPPED_EVENT)
    else:
        app.sandboxes.set_state(rec, cri.SANDBOX_NOTREADY)
