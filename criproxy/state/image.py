"""Image records and what the image service keeps between calls.

``LocalImage`` is what CRI needs of an image containerd holds (the image modules build it, the sandbox
and container code read it). ``ImageState`` lists the image service's state the way containerd's CRI
image service lists its stores: pulls in flight, the per-blob and per-chain turns that make concurrent
pulls share work, the registry HTTP session and bearer tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from criproxy.inflight import InFlight, KeyedLocks
from criproxy.lru import LRU

if TYPE_CHECKING:
    import aiohttp
    import grpc.aio

TOKEN_EARLY_EXPIRY = 5.0
TOKEN_CACHE_ENTRIES = 1024      # (realm, service, scope, credentials) tuples remembered at once


@dataclass(frozen=True)
class LocalImage:
    """What CRI needs of an image that containerd holds."""

    id: str                     # config digest, "sha256:…"
    target_digest: str          # root descriptor (index or manifest) digest
    target_media_type: str
    manifest_digest: str        # the platform manifest used
    config: dict[str, Any]      # the OCI image config JSON
    chain_id: str               # top snapshot name (chain ID of all layers)
    size: int                   # compressed size of config + layers
    names: list[str] = field(default_factory=list)  # every containerd record naming this image

    @property
    def repo_tags(self) -> list[str]:
        return sorted(n for n in self.names if "@" not in n and not n.startswith("sha256:"))

    @property
    def repo_digests(self) -> list[str]:
        return sorted(n for n in self.names if "@" in n)

    @property
    def record_name(self) -> str:
        """The name a container's ``image`` field should carry: tag, then digest, then ID."""
        return (self.repo_tags or self.repo_digests or [self.id])[0]


TokenKey = tuple[str, str, str, str]


class TokenCache:
    """Bearer tokens by (realm, service, scope, credentials), dropped a little before they expire;
    at most TOKEN_CACHE_ENTRIES, least recently used first out."""

    def __init__(self, max_entries: int = TOKEN_CACHE_ENTRIES) -> None:
        self._tokens: LRU[TokenKey, tuple[str, float]] = LRU(max_entries)

    def get(self, key: TokenKey) -> str | None:
        tok = self._tokens.get(key)
        if tok is None or tok[1] <= time.monotonic():
            self._tokens.pop(key)
            return None
        return tok[0]

    def put(self, key: TokenKey, value: str, ttl: float) -> None:
        self._tokens.put(key, (value, time.monotonic() + max(ttl - TOKEN_EARLY_EXPIRY, 1.0)))

    def drop(self, key: TokenKey) -> None:
        self._tokens.pop(key)


@dataclass(eq=False)
class ImageState:
    """The image service's state (images/pull.py, images/registry.py, images/content.py)."""

    # Pulls in flight by reference and credentials: concurrent PullImage calls share one.
    pulls: InFlight[str, LocalImage] = field(default_factory=InFlight)
    # One download per blob digest at a time: a second pull waits, then finds it in containerd.
    blob_turns: KeyedLocks[str] = field(default_factory=KeyedLocks)
    # One unpack per chain ID at a time.
    unpack_turns: KeyedLocks[str] = field(default_factory=KeyedLocks)
    # The registry HTTP session (pooled connections), made at the first pull; aiohttp loads then.
    http: aiohttp.ClientSession | None = None
    # Registry bearer tokens (bounded).
    tokens: TokenCache = field(default_factory=TokenCache)
    # Content.Write with a pass-through serializer, made once per containerd channel.
    content_write: tuple[grpc.aio.Channel, grpc.aio.StreamStreamMultiCallable] | None = None
