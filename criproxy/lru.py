"""A small bounded LRU map: every cache criproxy keeps for the life of the process is one of these.

A cache keyed by something the outside world chooses (image references, digests, sandbox IDs) must
not grow without limit. Entries are bounded by count and, when a weight is given per entry, by the
sum of weights (bytes), evicting the least recently used first. Plain code on an OrderedDict rather
than ``functools.lru_cache``: the caches here hold results of async calls and need explicit puts,
drops and clears.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``max_entries`` entries and ``max_weight`` total weight (0: no weight bound)."""

    def __init__(self, max_entries: int, max_weight: int = 0) -> None:
        if max_entries < 1:
            raise ValueError("an LRU needs room for at least one entry")
        self.max_entries, self.max_weight = max_entries, max_weight
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.weight = 0

    def get(self, key: K) -> V | None:
        """The value (now most recently used), or None."""
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[0]

    def put(self, key: K, value: V, weight: int = 0) -> None:
        """Store ``value``; an entry heavier than the whole weight bound is not kept at all."""
        self.pop(key)
        if self.max_weight and weight > self.max_weight:
            return
        self._items[key] = (value, weight)
        self.weight += weight
        while len(self._items) > self.max_entries or (self.max_weight and self.weight > self.max_weight):
            _, (_, w) = self._items.popitem(last=False)
            self.weight -= w

    def pop(self, key: K) -> V | None:
        hit = self._items.pop(key, None)
        if hit is None:
            return None
        self.weight -= hit[1]
        return hit[0]

    def clear(self) -> None:
        self._items.clear()
        self.weight = 0

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))
