"""The event relay: one containerd subscription in, CRI container events out to every subscriber.

In: a single ``Events.Subscribe`` for criproxy's namespace and the task topics (exit, OOM). Each
envelope goes to the handler registered for its topic (the container module registers its own, so
this module knows nothing about containers). A broken stream (containerd restarting) is reopened with
backoff, and every reconnect, like a timer, triggers the registered relist functions, which correct
whatever the disconnect missed.

Out: ``publish`` puts a ``ContainerEventResponse`` into each ``GetContainerEvents`` subscriber's own
bounded queue without awaiting; a full queue drops the event for that subscriber only, logs it and
counts it, so one slow reader never blocks the relay or the RPC that caused the event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from criproxy import errors
from criproxy.protos import cri, events_pb

if TYPE_CHECKING:
    from criproxy.app import App

log = logging.getLogger("criproxy.events")
QUEUE_SIZE = 1024
RELIST_SECONDS = 10.0
Handler = Callable[["App", Any], Awaitable[None]]
Relister = Callable[["App"], Awaitable[None]]
TOPICS = ("/tasks/exit", "/tasks/oom")


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[cri.ContainerEventResponse] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


@dataclass
class Relay:
    subscribers: set[Subscriber] = field(default_factory=set)
    handlers: dict[str, Handler] = field(default_factory=dict)
    relisters: list[Relister] = field(default_factory=list)
    dropped_total: int = 0
    published_total: int = 0
    received_total: int = 0
    reconnects: int = 0
    last_drop_log: float = 0.0
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    # -- out ----------------------------------------------------------------------------------------
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, event: cri.ContainerEventResponse) -> None:
        self.published_total += 1
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

    # -- in -----------------------------------------------------------------------------------------
    def on(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    def on_relist(self, fn: Relister) -> None:
        self.relisters.append(fn)

    async def run(self, app: App) -> None:
        """Keep one subscription open for the life of criproxy; relist after each (re)connect."""
        ns = app.ctrd.namespace
        filters = [f'namespace=="{ns}",topic=="{t}"' for t in TOPICS]
        delay = 0.1
        while True:
            try:
                stream = app.ctrd.events.Subscribe.iterate(events_pb.SubscribeRequest(filters=filters))
                self.connected.set()
                app.spawn(self.relist(app), "events-relist")
                async for env in stream:
                    delay = 0.1
                    await self._dispatch(app, env)
            except asyncio.CancelledError:
                raise
            except errors.CriError as e:
                log.info("containerd event stream ended (%s); resubscribing", e)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _dispatch(self, app: App, env: Any) -> None:
        self.received_total += 1
        handler = self.handlers.get(env.topic)
        if handler is None:
            return
        try:
            await handler(app, env)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling containerd event %s failed", env.topic)

    async def relist(self, app: App) -> None:
        for fn in list(self.relisters):
            try:
                await fn(app)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relist %s failed", getattr(fn, "__qualname__", fn))

    async def relist_forever(self, app: App, period: float = RELIST_SECONDS) -> None:
        while True:
            await asyncio.sleep(period)
            await self.relist(app)


RELAY_KEY = "events.relay"


def relay_of(app: App) -> Relay:
    """The App's relay, created on first use (start steps and handlers share it)."""
    relay = app.parts.get(RELAY_KEY)
    if relay is None:
        relay = app.parts[RELAY_KEY] = Relay()
    assert isinstance(relay, Relay)
    return relay
