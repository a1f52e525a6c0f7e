"""CRI's ID lookup rule, shared by the sandbox and container stores: a full ID or a unique prefix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from criproxy import errors

R = TypeVar("R")
_OBJECT_ID = re.compile(r"[0-9a-f]{64}")


def is_object_id(text: str) -> bool:
    """Whether ``text`` is an ID criproxy makes (64 lowercase hex). IDs read back from containerd
    or from directory names are checked with this before they become path components."""
    return _OBJECT_ID.fullmatch(text) is not None


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
