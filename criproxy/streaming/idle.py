"""Closing sessions nobody uses: kubelet's stream idle timeout (4 h by default).

A client that vanished without the connection breaking (a dropped NAT entry, a suspended laptop)
would otherwise hold an exec process, a port-forward socket and a task forever. Transports ``touch``
on every frame in or out; ``expired`` returns once nothing happened for ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import time


class Idle:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    async def expired(self) -> None:
        """Return when the session has been idle for ``timeout``; never when the timeout is 0."""
        if self.timeout <= 0:
            await asyncio.Event().wait()
        while True:                 # a deadline that moves with every touch, not a poll
            left = self.last + self.timeout - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)
