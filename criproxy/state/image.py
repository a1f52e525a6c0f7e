"""Image records and what the image service keeps between calls.

``LocalImage`` is what CRI needs of an image containerd holds (the image modules build it, the sandbox
and container code read it). ``ImageState`` lists the image service's state the way containerd's CRI
image service lists its stores: pulls in flight, the per-blob and per-chain turns that make concurrent
pulls share work, the registry HTTP session and bearer tokens.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from criproxy.inflight import InFlight, KeyedLocks
from criproxy.lru import LRU

if TYPE_CHECKING:
    import aiohttp
    import grpc.aio

TOKEN_EARLY_EXPIRY = 5.0
TOKEN_CACHE_ENTRIES = 1024      # (realm, service, scope, credentials) tuples remembered at once
DOCUMENT_CACHE_ENTRIES = 2048   # parsed manifests, indexes and configs remembered at once…
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024     # …and their raw size together


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


@dataclass(frozen=True)
class ImageRecord:
    """One containerd image record as the catalog keeps it: its name, root descriptor and labels."""

    name: str
    target_digest: str
    target_media_type: str
    target_size: int
    labels: dict[str, str]


@dataclass(frozen=True)
class CatalogEntry:
    """One CRI image: what ``describe`` found plus the records (names, labels) naming it."""

    image: LocalImage
    labels: dict[str, str]


NAME_CACHE_ENTRIES = 1024       # raw references → normalized record names remembered at once


class ImageCatalog:
    """The image cache: every image record of criproxy's namespace and the CRI images they make.

    Filled by a full Images.List at start (``images/catalog.py``), then kept current record by record
    from containerd's ``/images/*`` events and criproxy's own writes, and relisted whenever the event
    stream is reopened (and on the relist timer), so ImageStatus, ListImages and CreateContainer
    answer without a containerd call. Records are grouped by target (one description per target:
    content is immutable) and merged by image ID (config digest) as ``entries`` always were. Its size
    follows what containerd holds: descriptions are pruned to targets some record names.
    """

    def __init__(self) -> None:
        self.records: dict[str, ImageRecord] = {}
        # Target digest → the image its content describes (names empty); absent when unreadable.
        self.described: dict[str, LocalImage] = {}
        self.loaded = False
        self.generation = 0
        self.by_id: dict[str, CatalogEntry] = {}
        self.by_name: dict[str, str] = {}          # record name → image ID
        # Answers built from one generation: ListImages' serialized answer, ImageStatus' by image ID.
        self.list_answer: bytes | None = None
        self.status_answers: dict[str, bytes] = {}
        # Serializes record refreshes and relists so an older read never overwrites a newer one.
        self.lock = asyncio.Lock()
        self.pending: set[str] = set()             # names whose refresh is queued (events coalesce)

    def entries(self) -> list[CatalogEntry]:
        return sorted(self.by_id.values(), key=lambda e: e.image.id)

    def for_name(self, name: str) -> CatalogEntry | None:
        image_id = self.by_name.get(name)
        return None if image_id is None else self.by_id.get(image_id)

    def replace_all(self, records: list[ImageRecord], described: dict[str, LocalImage]) -> None:
        self.records = {r.name: r for r in records}
        self.described = described
        self.loaded = True
        self._rebuild()

    def put(self, rec: ImageRecord, image: LocalImage | None) -> None:
        """One record created or changed; ``image`` is its target described (None: unreadable)."""
        self.records[rec.name] = rec
        if image is not None:
            self.described[rec.target_digest] = image
        self._rebuild()

    def drop(self, name: str) -> None:
        if self.records.pop(name, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        by_target: dict[str, list[ImageRecord]] = {}
        for rec in self.records.values():
            by_target.setdefault(rec.target_digest, []).append(rec)
        self.described = {d: img for d, img in self.described.items() if d in by_target}
        merged: dict[str, CatalogEntry] = {}
        for digest, recs in by_target.items():
            img = self.described.get(digest)
            if img is None:
                continue
            labels: dict[str, str] = {}
            for r in recs:
                labels.update(r.labels)
            names = {r.name for r in recs}
            prev = merged.get(img.id)
            if prev is not None:
                names |= set(prev.image.names)
                labels = {**prev.labels, **labels}
            merged[img.id] = CatalogEntry(replace(img, names=sorted(names)), labels)
        self.by_id = merged
        self.by_name = {n: e.image.id for e in merged.values() for n in e.image.names}
        self.generation += 1
        self.list_answer = None
        self.status_answers = {}


@dataclass(eq=False)
class FsUsage:
    """ImageFsInfo's figure (``images/usage.py``): measured in the background at most every
    ``USAGE_PERIOD`` seconds while someone asks, answered as it stands meanwhile."""

    snapshot_root: str = ""                  # the snapshotter's and the content store's roots, asked once
    content_root: str = ""
    snapshots: tuple[int, int] = (0, 0)      # (bytes, inodes) of the committed snapshots
    content: tuple[int, int] = (0, 0)        # (bytes, blobs) of the content store
    measured_at: int = 0                     # unix nanoseconds of the figure; 0: never measured
    measured_mono: float = 0.0
    # (bytes, inodes) per committed snapshot (they never change), pruned to those that exist.
    per_snapshot: dict[str, tuple[int, int]] = field(default_factory=dict)
    refreshing: asyncio.Task[None] | None = None


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

    # Parsed manifests, indexes and configs by digest (content is immutable), bounded by count and bytes.
    documents: LRU[str, Any] = field(default_factory=lambda: LRU(DOCUMENT_CACHE_ENTRIES, DOCUMENT_CACHE_BYTES))
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
    # The image cache (images/catalog.py): records, CRI images by ID and name, prebuilt answers.
    catalog: ImageCatalog = field(default_factory=ImageCatalog)
    # ImageFsInfo's periodically refreshed figure (images/usage.py).
    usage: FsUsage = field(default_factory=FsUsage)
    # Raw references as callers spell them → normalized record names (images/catalog.py; bounded).
    names: LRU[str, str] = field(default_factory=lambda: LRU(NAME_CACHE_ENTRIES))
    # Whether containerd serves the Transfer service (images/transfer.py); None until first asked.
    transfer_available: bool | None = None
    # Content.Write with a pass-through serializer, made once per containerd channel.
    content_write: tuple[grpc.aio.Channel, grpc.aio.StreamStreamMultiCallable] | None = None
