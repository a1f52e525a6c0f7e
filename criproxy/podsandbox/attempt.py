"""One shared attempt at an idempotent, long operation (StopPodSandbox, RemovePodSandbox).

Concurrent callers join the attempt in flight instead of starting their own, and it survives a
caller going away. Each caller waits at most until the attempt's deadline (``stop_timeout``) and then
gets DEADLINE_EXCEEDED. An attempt still running past its deadline is stuck (a frozen shim, a hung
CNI plugin): the next call cancels it and starts a fresh one, so one hang never wedges the pod until
criproxy restarts, and the kubelet's retry succeeds once the hang is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from criproxy import errors
from criproxy.app import App

log = logging.getLogger("criproxy.attempt")


def join_or_start(app: App, running: asyncio.Task[None] | None, started: float,
                  start: Callable[[], Coroutine[Any, Any, None]], name: str) -> tuple[asyncio.Task[None], float]:
    """The attempt to wait for and when it started (monotonic): the one in flight while it is within
    its deadline, else a fresh one (an overrun one is cancelled first)."""
    now = time.monotonic()
    if running is not None and not running.done():
        if now - started <= app.config.stop_timeout:
            return running, started
        log.warning("%s: the attempt started %.0fs ago is stuck; cancelling it and trying again",
                    name, now - started)
        running.cancel()
    return app.spawn(start(), name), now


async def wait(app: App, task: asyncio.Task[None], started: float, what: str) -> None:
    """Wait for the attempt until its deadline; DEADLINE_EXCEEDED after that (it keeps running)."""
    remaining = started + app.config.stop_timeout - time.monotonic()
    try:
        await asyncio.wait_for(asyncio.shield(task), max(remaining, 0.0))
    except TimeoutError:
        raise errors.DeadlineExceeded(
            f"{what} did not finish within {app.config.stop_timeout:g}s (a shim or network plugin is not "
            f"answering); a later call starts a fresh attempt") from None
