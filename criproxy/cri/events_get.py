"""GetContainerEvents, and the relay's wiring: containerd task events in, CRI container events out.

Each caller gets its own bounded queue (``events.relay``); the stream ends only when the caller goes
away. The relay itself starts once criproxy is ready to serve (start step 50): one containerd
subscription whose exit and OOM events update the container cache, plus the periodic relist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from criproxy import lifecycle
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.cri.container_task import handle_exit
from criproxy.events.relay import relay_of
from criproxy.protos import cri, task_events


async def _on_exit(app: App, env: Any) -> None:
    ev = task_events.TaskExit.FromString(env.event.value)
    if ev.id and ev.id != ev.container_id:
        return                                  # an exec process, handled by its ExecSync
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id and rec.status.started_at and not rec.starting:
        app.spawn(handle_exit(app, rec, ev.exit_status, ev.exited_at.ToNanoseconds()), f"exit-{rec.id[:12]}")


async def _on_oom(app: App, env: Any) -> None:
    ev = task_events.TaskOOM.FromString(env.event.value)
    rec = app.containers.find(ev.container_id) if ev.container_id else None
    if rec is not None and rec.id == ev.container_id:
        app.containers.update_oom(rec)


@lifecycle.on_start(50)
async def start_relay(app: App) -> None:
    relay = relay_of(app)
    relay.on("/tasks/exit", _on_exit)
    relay.on("/tasks/oom", _on_oom)
    app.spawn(relay.run(app), "events-relay")
    app.spawn(relay.relist_forever(app), "events-relist-timer")
    app.observer.gauges.update({
        "events_received": lambda: relay.received_total,    # containerd events taken in
        "events_published": lambda: relay.published_total,  # CRI events sent to subscribers
        "events_dropped": lambda: relay.dropped_total,      # lost to a subscriber too slow
        "events_reconnects": lambda: relay.reconnects,      # containerd event stream re-opened
        "events_subscribers": lambda: len(relay.subscribers),
    })


@rpc("GetContainerEvents")
async def get_container_events(app: App, request: cri.GetEventsRequest) -> AsyncIterator[cri.ContainerEventResponse]:
    relay = relay_of(app)
    sub = relay.subscribe()
    try:
        while True:
            yield await sub.queue.get()
    finally:
        relay.unsubscribe(sub)
