"""The CRI view of containerd's image records: grouped by image ID, converted to ``cri.Image``.

containerd keeps one record per name (tag, digest reference, ID); the CRI shows one image per
image ID with all its names. Records are read with one Images.List; manifests and configs come from
the content store through ``local.describe`` (cached by digest, content being immutable), so the
kubelet's ListImages every 10 s costs one containerd call once everything is cached. Records whose
content is missing or not an image (half-imported, foreign artifacts) are skipped, not errors.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.images import reference
from criproxy.images.local import LocalImage, describe
from criproxy.labels import IMAGE_PINNED
from criproxy.protos import cri, images_pb

log = logging.getLogger("criproxy.images.catalog")


@dataclass(frozen=True)
class CatalogEntry:
    """One CRI image: what ``describe`` found plus the records (names, labels) naming it."""

    image: LocalImage
    labels: dict[str, str]


async def _describe_target(app: App, target: Any, names: list[str]) -> LocalImage | None:
    try:
        return await describe(app, target, names)
    except (errors.CriError, KeyError, ValueError, TypeError) as e:
        log.debug("skipping image records %s: %s", names, e)
        return None


async def entries(app: App) -> list[CatalogEntry]:
    """Every image in the namespace, one entry per image ID, names merged across records."""
    records = (await app.ctrd.images.List(images_pb.ListImagesRequest())).images
    by_target: dict[str, list[Any]] = {}
    for rec in records:
        by_target.setdefault(rec.target.digest, []).append(rec)
    found = await asyncio.gather(*(_describe_target(app, recs[0].target, sorted(r.name for r in recs))
                                   for recs in by_target.values()))
    merged: dict[str, CatalogEntry] = {}
    for recs, img in zip(by_target.values(), found, strict=True):
        if img is None:
            continue
        labels: dict[str, str] = {}
        for r in recs:
            labels.update(r.labels)
        prev = merged.get(img.id)
        if prev is not None:
            img = LocalImage(**{**img.__dict__, "names": sorted({*prev.image.names, *img.names})})
            labels = {**prev.labels, **labels}
        merged[img.id] = CatalogEntry(img, labels)
    return sorted(merged.values(), key=lambda e: e.image.id)


def _user(config: dict[str, Any]) -> tuple[int | None, str]:
    """(uid, username) from the config's ``User`` as the built-in CRI reads it (``uid[:gid]``)."""
    user = str((config.get("config") or {}).get("User") or "").split(":")[0]
    if not user:
        return None, ""
    try:
        return int(user), ""
    except ValueError:
        return None, user


def to_cri(app: App, entry: CatalogEntry) -> cri.Image:
    img = entry.image
    uid, username = _user(img.config)
    pinned = IMAGE_PINNED in entry.labels or is_pause(app, img.names)
    out = cri.Image(id=img.id, repo_tags=img.repo_tags, repo_digests=img.repo_digests, size=img.size,
                    username=username, spec=cri.ImageSpec(image=img.id), pinned=pinned)
    if uid is not None:
        out.uid.value = uid
    return out


def is_pause(app: App, names: list[str]) -> bool:
    """The configured sandbox image is pinned even when another tool pulled it."""
    try:
        return str(reference.parse(app.config.pause_image)) in names
    except errors.InvalidArgument:
        return False


async def _records_for_target(app: App, digest: str) -> list[Any]:
    resp = await app.ctrd.images.List(images_pb.ListImagesRequest(filters=[f'target.digest=="{digest}"']))
    return list(resp.images)


async def find(app: App, ref: str) -> CatalogEntry | None:
    """The entry for a tag, digest reference or image ID; None when containerd has no such image.

    A name is one Images.Get plus one filtered List; an image ID without its own record (an image
    another tool pulled) falls back to scanning the catalog.
    """
    wanted_id = reference.image_id(ref)
    name = wanted_id or str(reference.parse(ref))
    try:
        rec = (await app.ctrd.images.Get(images_pb.GetImageRequest(name=name))).image
    except errors.NotFound:
        if wanted_id is None:
            return None
        return next((e for e in await entries(app) if e.image.id == wanted_id), None)
    recs = await _records_for_target(app, rec.target.digest)
    img = await _describe_target(app, rec.target, sorted(r.name for r in recs))
    if img is None:
        return None
    labels: dict[str, str] = {}
    for r in recs:
        labels.update(r.labels)
    return CatalogEntry(img, labels)


async def resolve_local(app: App, ref: str) -> LocalImage:
    """The image named by a tag, repo digest or image ID; NotFound if containerd lacks it.

    The read side sandbox and container creation start from; the same lookup as ImageStatus, so
    what kubelet sees as present is exactly what CreateContainer can use.
    """
    entry = await find(app, ref)
    if entry is None:
        raise errors.NotFound(f"image {ref!r} not found")
    return entry.image
