"""OCI content descriptors as the puller handles them.

Kept apart from the registry client so that modules that only describe content (records, unpack,
manifest parsing) do not import aiohttp: an idle criproxy never loads an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from criproxy import errors


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what to fetch and how to check it."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, doc: Any) -> Descriptor:
        try:
            digest, size = str(doc["digest"]), int(doc["size"])
        except (KeyError, TypeError, ValueError):
            raise errors.InvalidArgument(f"malformed descriptor in manifest: {doc!r:.200}") from None
        if not digest.startswith("sha256:") or len(digest) != 71 or size < 0:
            raise errors.InvalidArgument(f"unsupported or malformed digest {digest!r} (size {size})")
        try:
            ann = tuple(sorted((str(k), str(v)) for k, v in dict(doc.get("annotations") or {}).items()))
        except (TypeError, ValueError):
            raise errors.InvalidArgument(f"malformed annotations in manifest: {doc!r:.200}") from None
        return cls(str(doc.get("mediaType", "")), digest, size, ann)
