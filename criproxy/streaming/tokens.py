"""Single-use, expiring tokens that stand for one Exec/Attach/PortForward request.

The CRI call only validates and stores the request; the client (kubelet, crictl) then connects to the
URL carrying the token. Whoever holds the URL may run the command, so the token is unguessable
(128 random bits), works once, and dies after a short TTL. The count is bounded (kubelet's own
streaming server allows 1000 in flight): when full, expired entries are purged first, and only if it
is still full does the call fail RESOURCE_EXHAUSTED, since dropping a live token would break a
client that is about to connect.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from criproxy import errors


@dataclass(frozen=True)
class Pending:
    """A stored request: what kind of stream (``exec``, ``attach``, ``portforward``) and its CRI message."""

    kind: str
    request: Any
    expires: float


class TokenCache:
    """Tokens in insertion order (which is expiry order, the TTL being fixed)."""

    def __init__(self, ttl: float, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._items: collections.OrderedDict[str, Pending] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, kind: str, request: Any) -> str:
        """Store a request and return its new token."""
        self.purge()
        if len(self._items) >= self.limit:
            raise errors.ResourceExhausted(f"maximum number of in-flight streaming requests ({self.limit}) exceeded")
        token = secrets.token_urlsafe(16)
        self._items[token] = Pending(kind, request, self.clock() + self.ttl)
        return token

    def consume(self, token: str, kind: str) -> Pending | None:
        """The request behind a live token of this kind, removing it; None if unknown, used or expired.

        A token presented on the wrong path (an exec token on /attach) is consumed too: it was
        leaked or forged, so it must not be tried again.
        """
        item = self._items.pop(token, None)
        if item is None or item.expires <= self.clock() or item.kind != kind:
            return None
        return item

    def purge(self) -> int:
        """Drop expired tokens (the oldest first); returns how many went."""
        now, dropped = self.clock(), 0
        while self._items:
            token, item = next(iter(self._items.items()))
            if item.expires > now:
                break
            del self._items[token]
            dropped += 1
        return dropped
