"""Concurrent callers of one key share one in-flight operation (one pull per reference, one
RunPodSandbox per pod name, one CreateContainer per container name).

Two kinds of operation, with their cancellation rules stated once, here:

- ``spawn``: the operation runs in a background task of its own. A caller that goes away (the kubelet
  timed out) does not cancel it: a retry joins it and gets its result. Callers wait with ``wait``.
- ``run``: the operation runs in the first caller's own task, so that caller going away cancels it
  (and its undo runs). Callers that joined it with ``join`` and are not cancelled themselves then find
  no operation and start their own; a result or an error reaches every joiner.

Either way the key is free again once the operation has finished, and its error counts as retrieved
(nobody may have waited).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class InFlight(Generic[K, V]):
    """The operations in flight, by key (as many as there are concurrent callers: no other bound)."""

    def __init__(self) -> None:
        self._ops: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def current(self, key: K) -> asyncio.Future[V] | None:
        """The operation in flight for ``key``, if any."""
        return self._ops.get(key)

    def spawn(self, key: K, start: Callable[[], Coroutine[Any, Any, V]], spawn: Spawn,
              name: str) -> tuple[asyncio.Future[V], bool]:
        """``key``'s background operation and whether it was already running (joined) or is new."""
        running = self._ops.get(key)
        if running is not None:
            return running, True
        task: asyncio.Task[V] = spawn(start(), name)
        self._track(key, task)
        return task, False

    @staticmethod
    async def wait(op: asyncio.Future[V]) -> V:
        """A background operation's result; the caller going away leaves it running."""
        return await asyncio.shield(op)

    async def run(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Run ``start()`` in this task as ``key``'s operation, sharing its outcome with joiners."""
        if key in self._ops:
            raise RuntimeError(f"an operation for {key!r} is already in flight")
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._ops[key] = fut
        try:
            result = await start()
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            fut.set_result(result)
        finally:
            self._finished(key, fut)     # now, not later: a joiner must not find a finished one
        return result

    async def join(self, key: K) -> tuple[bool, V | None]:
        """Wait for ``key``'s operation run by another caller: (True, its result), or (False, None) when
        none is in flight, including when the one that was gave up (its caller was cancelled)."""
        while (op := self._ops.get(key)) is not None:
            try:
                return True, await asyncio.shield(op)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if not op.cancelled() or (me is not None and me.cancelling()):
                    raise
                if self._ops.get(key) is op:
                    del self._ops[key]
        return False, None

    def _track(self, key: K, op: asyncio.Future[V]) -> None:
        self._ops[key] = op
        op.add_done_callback(lambda done: self._finished(key, done))

    def _finished(self, key: K, op: asyncio.Future[V]) -> None:
        if self._ops.get(key) is op:
            del self._ops[key]
        if not op.cancelled():
            op.exception()      # retrieved: every waiter may have gone away


class KeyedLocks(Generic[K]):
    """One holder per key at a time. A key's lock exists only while someone holds or waits for it
    (counted, so a waiter woken by a release never finds its lock replaced by a newcomer's)."""

    def __init__(self) -> None:
        self._locks: dict[K, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
