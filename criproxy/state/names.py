"""Name reservations: one CRI name (``<pod>_<ns>_<uid>_<attempt>``) belongs to one ID at a time.

The kubelet retries RunPodSandbox/CreateContainer with the same name after its own timeout, so a
name maps to the ID that holds it and the caller can hand the retry the same object (or wait for
the first call's outcome) instead of failing with "name is reserved".
"""

from __future__ import annotations

from criproxy import errors


class NameIndex:
    def __init__(self, kind: str):
        self.kind = kind
        self._by_name: dict[str, str] = {}

    def reserve(self, name: str, obj_id: str) -> None:
        """Take ``name`` for ``obj_id``; AlreadyExists names the current holder."""
        holder = self._by_name.get(name)
        if holder is not None and holder != obj_id:
            raise errors.AlreadyExists(f"{self.kind} name {name!r} is reserved for {holder}")
        self._by_name[name] = obj_id

    def release(self, name: str) -> None:
        self._by_name.pop(name, None)

    def holder(self, name: str) -> str | None:
        return self._by_name.get(name)

    def release_id(self, obj_id: str) -> None:
        for name in [n for n, i in self._by_name.items() if i == obj_id]:
            del self._by_name[name]
