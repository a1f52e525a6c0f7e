"""The shared in-flight primitive: one operation per key, joined by concurrent callers, with the two
cancellation rules (background operations outlive their callers; a caller-run one is retried by its
joiners when its caller gives up), and the per-key turns."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from criproxy.inflight import InFlight, KeyedLocks

tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def test_spawned_operation_is_shared_and_outlives_its_callers() -> None:
    ops: InFlight[str, int] = InFlight()
    started = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        return 42

    first, joined1 = ops.spawn("k", work, spawn, "w")
    second, joined2 = ops.spawn("k", work, spawn, "w")
    assert (joined1, joined2) == (False, True) and first is second
    waiter = asyncio.ensure_future(ops.wait(first))
    await asyncio.sleep(0)
    waiter.cancel()                          # the caller goes away: the operation goes on
    await asyncio.gather(waiter, return_exceptions=True)
    assert not first.done() and len(ops) == 1
    gate.set()
    assert await ops.wait(second) == 42
    await asyncio.sleep(0)
    assert started == 1 and len(ops) == 0 and ops.current("k") is None


async def test_spawned_failure_reaches_every_waiter_and_frees_the_key() -> None:
    ops: InFlight[str, int] = InFlight()

    async def fail() -> int:
        await asyncio.sleep(0)
        raise ValueError("no")

    op, _ = ops.spawn("k", fail, spawn, "f")
    results = await asyncio.gather(ops.wait(op), ops.wait(op), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError]
    await asyncio.sleep(0)
    assert ops.current("k") is None


async def test_joiner_gets_the_result_of_a_caller_run_operation() -> None:
    ops: InFlight[str, str] = InFlight()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "id-1"

    owner = asyncio.ensure_future(ops.run("name", work))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(ops.join("name"))
    await asyncio.sleep(0)
    gate.set()
    assert await owner == "id-1"
    assert await joiner == (True, "id-1")
    assert await ops.join("name") == (False, None)     # nothing in flight any more


async def test_joiner_starts_afresh_when_the_owner_gives_up() -> None:
    ops: InFlight[str, str] = InFlight()

    async def never() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    owner = asyncio.ensure_future(ops.run("name", never))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(ops.join("name"))
    await asyncio.sleep(0)
    owner.cancel()
    await asyncio.gather(owner, return_exceptions=True)
    assert await asyncio.wait_for(joiner, 5) == (False, None)
    assert ops.current("name") is None


async def test_a_cancelled_joiner_is_cancelled_and_the_owner_goes_on() -> None:
    ops: InFlight[str, str] = InFlight()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "id"

    owner = asyncio.ensure_future(ops.run("name", work))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(ops.join("name"))
    await asyncio.sleep(0)
    joiner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joiner
    gate.set()
    assert await owner == "id"


async def test_error_of_a_caller_run_operation_reaches_joiners() -> None:
    ops: InFlight[str, str] = InFlight()
    gate = asyncio.Event()

    async def fail() -> str:
        await gate.wait()
        raise KeyError("taken")

    owner = asyncio.ensure_future(ops.run("name", fail))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(ops.join("name"))
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(owner, joiner, return_exceptions=True)
    assert [type(r) for r in results] == [KeyError, KeyError]


async def test_run_refuses_a_second_operation_for_a_key_in_flight() -> None:
    ops: InFlight[str, str] = InFlight()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "x"

    owner = asyncio.ensure_future(ops.run("k", work))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await ops.run("k", work)
    gate.set()
    await owner


async def test_keyed_locks_one_holder_per_key_and_nothing_left() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[str] = []
    most = 0

    async def use(key: str) -> None:
        nonlocal most
        async with locks.hold(key):
            inside.append(key)
            most = max(most, inside.count(key))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside.remove(key)

    await asyncio.gather(*(use("a") for _ in range(5)), *(use("b") for _ in range(3)))
    assert most == 1 and len(locks) == 0


async def test_keyed_locks_newcomer_after_a_release_still_waits_its_turn() -> None:
    """A waiter woken by a release has not run yet; a caller arriving then must not get a fresh lock."""
    locks: KeyedLocks[str] = KeyedLocks()
    holders = 0
    most = 0

    async def use() -> None:
        nonlocal holders, most
        async with locks.hold("k"):
            holders += 1
            most = max(most, holders)
            await asyncio.sleep(0)
            holders -= 1

    first = asyncio.ensure_future(use())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(use())
    await asyncio.sleep(0)
    await asyncio.sleep(0)           # first releases; second is woken but not yet running
    third = asyncio.ensure_future(use())
    await asyncio.gather(first, second, third)
    assert most == 1 and len(locks) == 0
