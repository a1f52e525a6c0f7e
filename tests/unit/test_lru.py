"""The bounded LRU every long-lived cache uses: count bound, weight bound, recency order."""

from __future__ import annotations

import pytest

from criproxy.lru import LRU


def test_count_bound_evicts_least_recently_used() -> None:
    c: LRU[str, int] = LRU(3)
    for i, k in enumerate("abc"):
        c.put(k, i)
    assert c.get("a") == 0                  # a is now the most recent: b is the oldest
    c.put("d", 3)
    assert list(c) == ["c", "a", "d"] and "b" not in c and len(c) == 3
    for i in range(100):
        c.put(f"k{i}", i)
    assert len(c) == 3 and list(c) == ["k97", "k98", "k99"]


def test_weight_bound() -> None:
    c: LRU[str, bytes] = LRU(100, max_weight=10)
    c.put("a", b"aaaa", 4)
    c.put("b", b"bbbb", 4)
    c.put("c", b"cccc", 4)                  # 12 > 10: a goes
    assert list(c) == ["b", "c"] and c.weight == 8
    c.put("huge", b"x" * 11, 11)            # heavier than the whole bound: never kept
    assert "huge" not in c and c.weight == 8
    c.put("b", b"bb", 2)                    # replacing an entry replaces its weight
    assert c.weight == 6 and c.get("b") == b"bb"
    assert c.pop("c") == b"cccc" and c.weight == 2
    c.clear()
    assert len(c) == 0 and c.weight == 0 and c.get("b") is None


def test_needs_room() -> None:
    with pytest.raises(ValueError):
        LRU(0)
