"""CRI's ID lookup rule, shared by the sandbox and container stores: a full ID or a unique prefix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from criproxy import errors

R = TypeVar("R")


def find_by_prefix(by_id: Mapping[str, R], id_or_prefix: str, kind: str) -> R | None:
    """The record with this ID or unique ID prefix; None when none; InvalidArgument when ambiguous.

    An exact ID is a dict hit, so the common case (kubelet always sends full IDs) costs nothing.
    """
    rec = by_id.get(id_or_prefix)
    if rec is not None or not id_or_prefix:
        return rec
    hits = [r for i, r in by_id.items() if i.startswith(id_or_prefix)]
    if len(hits) > 1:
        raise errors.InvalidArgument(f"{kind} ID prefix {id_or_prefix!r} is ambiguous")
    return hits[0] if hits else None
