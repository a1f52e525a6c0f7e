"""GetContainerEvents: CRI container events from the relay (``events/relay.py``).

Each caller gets its own bounded queue; the stream ends only when the caller goes away. The relay
itself is started by server.py's start steps (``container_recover.start_relay``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri


@rpc("GetContainerEvents")
async def get_container_events(app: App, request: cri.GetEventsRequest) -> AsyncIterator[cri.ContainerEventResponse]:
    relay = app.relay
    sub = relay.subscribe()
    try:
        while True:
            yield await sub.queue.get()
    finally:
        relay.unsubscribe(sub)
