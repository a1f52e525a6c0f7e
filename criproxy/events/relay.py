"""The event relay: one containerd subscription in, CRI container events out to every subscriber.

In: a single ``Events.Subscribe`` for criproxy's namespace and the task topics (exit, OOM) and image
topics (create, update, delete: the image cache follows them). Each envelope goes to the one handler
``run`` is given (``container/recover.py``, which calls the container or image code for each
topic, so this module knows nothing about containers and nothing of the App). A broken
stream (containerd restarting) is reopened with backoff, and every reconnect, like a timer, runs the
relist ``run`` is given, which corrects whatever the disconnect missed.

Out: ``publish`` puts a ``ContainerEventResponse`` into each ``GetContainerEvents`` subscriber's own
bounded queue without awaiting; a full queue drops the event for that subscriber only, logs it and
counts it, so one slow reader never blocks the relay or the RPC that caused the event.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.protos import cri, events_pb

if TYPE_CHECKING:
    from criproxy.containerd import Containerd
    from criproxy.inflight import Spawn

log = logging.getLogger("criproxy.events")
QUEUE_SIZE = 1024
RECENT_EVENTS = 50
RELIST_SECONDS = 10.0
Handler = Callable[[Any], Awaitable[None]]     # one containerd event envelope
Relister = Callable[[], Awaitable[None]]
TOPICS = ("/tasks/exit", "/tasks/oom", "/images/create", "/images/update", "/images/delete")


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[cri.ContainerEventResponse] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


@dataclass
class Relay:
    subscribers: set[Subscriber] = field(default_factory=set)
    dropped_total: int = 0
    published_total: int = 0
    received_total: int = 0
    reconnects: int = 0
    last_drop_log: float = 0.0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # The last CRI events published, for the debug socket's /cache (criproxy ui): (unix seconds,
    # event type name, container ID, pod sandbox ID).
    recent: collections.deque[tuple[float, str, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS))

    # -- out ----------------------------------------------------------------------------------------
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, event: cri.ContainerEventResponse) -> None:
        self.published_total += 1
        self.recent.append((time.time(), cri.ContainerEventType.Name(event.container_event_type),
                            event.container_id, event.pod_sandbox_status.id))
        for sub in self.subscribers:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped += 1
                self.dropped_total += 1
                now = time.monotonic()
                if now - self.last_drop_log > 5:
                    self.last_drop_log = now
                    log.warning("container event subscriber too slow: dropped %d events so far (%d in total)",
                                sub.dropped, self.dropped_total)

    # -- in ---------------------------------------------------------------------------------------
    async def run(self, ctrd: Containerd, handle: Handler, relist: Relister, spawn: Spawn) -> None:
        """Keep one subscription open for the life of criproxy, handing each envelope to ``handle``;
        ``relist`` runs (in a task of ``spawn``) after each (re)connect."""
        filters = [f'namespace=="{ctrd.namespace}",topic=="{t}"' for t in TOPICS]
        delay = 0.1
        while True:
            try:
                stream = ctrd.events.Subscribe.iterate(events_pb.SubscribeRequest(filters=filters))
                self.connected.set()
                spawn(self.relist(relist), "events-relist")
                async for env in stream:
                    delay = 0.1
                    await self.dispatch(handle, env)
            except asyncio.CancelledError:
                raise
            except errors.CriError as e:
                log.info("containerd event stream ended (%s); resubscribing", e)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def dispatch(self, handle: Handler, env: Any) -> None:
        """One envelope to ``handle``; its failure is logged, never the relay's end."""
        self.received_total += 1
        try:
            await handle(env)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling containerd event %s failed", getattr(env, "topic", "?"))

    async def relist(self, relist: Relister) -> None:
        try:
            await relist()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relist failed")

    async def relist_forever(self, relist: Relister, period: float = RELIST_SECONDS) -> None:
        while True:
            await asyncio.sleep(period)
            await self.relist(relist)
