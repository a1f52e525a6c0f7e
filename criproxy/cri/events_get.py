"""GetContainerEvents, and the relay's wiring: containerd task events in, CRI container events out.

Each caller gets its own bounded queue (``events.relay``); the stream ends only when the caller goes
away. The relay itself starts last among server.py's start steps: one containerd subscription whose
exit and OOM events update the container cache, plus the periodic relist (containers, then sandboxes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from criproxy.app import App
from criproxy.cri import container_recover, recover_sandboxes, rpc
from criproxy.cri.container_task import handle_exit
from criproxy.protos import cri, task_events


async def _on_exit(app: App, env: Any) -> None:
    ev = task_events.TaskExit.FromString(env.event.value)
    if ev.id and ev.id != ev.container_id:
        return                                  # an exec process, handled by its ExecSync
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id and rec.status.started_at and not rec.handles.starting:
        app.spawn(handle_exit(app, rec, ev.exit_status, ev.exited_at.ToNanoseconds()), f"exit-{rec.id[:12]}")


async def _on_oom(app: App, env: Any) -> None:
    ev = task_events.TaskOOM.FromString(env.event.value)
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id:
        app.containers.update_oom(rec)


async def _on_event(app: App, env: Any) -> None:
    if env.topic == "/tasks/exit":
        await _on_exit(app, env)
    elif env.topic == "/tasks/oom":
        await _on_oom(app, env)


async def relist(app: App) -> None:
    """Correct drift after a reconnect or on the timer: containers first, then sandboxes; one
    failing does not keep the other from running."""
    try:
        await container_recover.relist(app)
    finally:
        await recover_sandboxes.relist_sandboxes(app)


def start_relay(app: App) -> None:
    async def handle(env: Any) -> None:
        await _on_event(app, env)

    async def relist_now() -> None:
        await relist(app)
    app.spawn(app.relay.run(app.ctrd, handle, relist_now, app.spawn), "events-relay")
    app.spawn(app.relay.relist_forever(relist_now), "events-relist-timer")
    relay = app.relay
    app.observer.gauges.update({
        "events_received": lambda: relay.received_total,    # containerd events taken in
        "events_published": lambda: relay.published_total,  # CRI events sent to subscribers
        "events_dropped": lambda: relay.dropped_total,      # lost to a subscriber too slow
        "events_reconnects": lambda: relay.reconnects,      # containerd event stream re-opened
        "events_subscribers": lambda: len(relay.subscribers),
    })


@rpc("GetContainerEvents")
async def get_container_events(app: App, request: cri.GetEventsRequest) -> AsyncIterator[cri.ContainerEventResponse]:
    relay = app.relay
    sub = relay.subscribe()
    try:
        while True:
            yield await sub.queue.get()
    finally:
        relay.unsubscribe(sub)
