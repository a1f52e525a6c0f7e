"""The relay's fan-out: every subscriber gets every event; a full queue drops for that one only."""

from __future__ import annotations

import asyncio

from criproxy.events import relay as r
from criproxy.protos import cri


async def test_fan_out_and_bounded_queues(monkeypatch: object) -> None:
    relay = r.Relay()
    fast, slow = relay.subscribe(), relay.subscribe()
    slow.queue = asyncio.Queue(2)
    for i in range(5):
        relay.publish(cri.ContainerEventResponse(container_id=str(i)))
        fast.queue.get_nowait()                    # a reader keeping up
    assert slow.queue.qsize() == 2 and slow.dropped == 3 and fast.dropped == 0
    assert relay.dropped_total == 3 and relay.published_total == 5
    assert [slow.queue.get_nowait().container_id for _ in range(2)] == ["0", "1"]
    relay.unsubscribe(slow)
    relay.publish(cri.ContainerEventResponse(container_id="x"))
    assert fast.queue.get_nowait().container_id == "x" and slow.queue.empty()


async def test_dispatch_and_relist_survive_handler_errors() -> None:
    relay = r.Relay()
    seen: list[str] = []

    async def bad(*args: object) -> None:
        raise RuntimeError("boom")

    async def good() -> None:
        seen.append("relist")

    class Env:
        topic = "/tasks/exit"

    await relay.dispatch(bad, Env())
    await relay.relist(good)
    await relay.relist(bad)
    assert seen == ["relist"] and relay.received_total == 1
