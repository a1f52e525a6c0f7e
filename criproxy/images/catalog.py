"""The CRI view of containerd's image records, kept in memory (``state.image.ImageCatalog``).

containerd keeps one record per name (tag, digest reference, ID); the CRI shows one image per image
ID with all its names. The catalog is loaded with one Images.List at start (``load``), then follows
containerd: each ``/images/create|update|delete`` event queues a refresh of that one name (an
Images.Get, so the outcome is containerd's state at that moment, whatever order events arrive in),
criproxy's own writes update it as they succeed (``note_put``/``note_delete``), and the event relay's
relist (after every (re)connect of the event stream and on its timer) replaces it with a fresh
Images.List. Refreshes and relists take one lock, so a slower, older read never overwrites a newer
one. Manifests and configs come from the content store through ``local.describe``, once per target
(content is immutable). Records whose content is missing or not an image (half-imported, foreign
artifacts) are kept as records but show no image, and are described again at the next relist.

So ImageStatus, ListImages and CreateContainer's image lookup make no containerd call for an image
that is there; a lookup that misses confirms the absence with one Images.Get (``find``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.images import reference
from criproxy.images.local import LocalImage, describe
from criproxy.labels import IMAGE_PINNED
from criproxy.protos import cri, descriptor_pb, image_events, images_pb
from criproxy.state.image import CatalogEntry as CatalogEntry  # re-exported for the cri/ image handlers
from criproxy.state.image import ImageRecord

log = logging.getLogger("criproxy.images.catalog")
TOPICS = ("/images/create", "/images/update", "/images/delete")
DESCRIBE_PARALLEL = 8


def _record(img: Any) -> ImageRecord:
    return ImageRecord(name=img.name, target_digest=img.target.digest, target_media_type=img.target.media_type,
                       target_size=img.target.size, labels=dict(img.labels))


def _target(rec: ImageRecord) -> descriptor_pb.Descriptor:
    return descriptor_pb.Descriptor(media_type=rec.target_media_type, digest=rec.target_digest,
                                    size=rec.target_size)


async def _describe(app: App, rec: ImageRecord) -> LocalImage | None:
    try:
        return await describe(app, _target(rec), [])
    except (errors.CriError, KeyError, ValueError, TypeError) as e:
        log.debug("image record %s: no image (%s)", rec.name, e)
        return None


async def relist(app: App) -> None:
    """Replace the catalog with containerd's records now (start, every event-stream (re)connect, the
    relist timer). Targets already described are not read again."""
    cat = app.images.catalog
    async with cat.lock:
        recs = [_record(i) for i in (await app.ctrd.images.List(images_pb.ListImagesRequest())).images]
        known = dict(cat.described)
        todo = {r.target_digest: r for r in recs if r.target_digest not in known}
        sem = asyncio.Semaphore(DESCRIBE_PARALLEL)

        async def one(rec: ImageRecord) -> LocalImage | None:
            async with sem:
                return await _describe(app, rec)
        found = await asyncio.gather(*(one(r) for r in todo.values()))
        for digest, img in zip(todo, found, strict=True):
            if img is not None:
                known[digest] = img
        cat.replace_all(recs, known)


async def load(app: App) -> None:
    """The first relist (a start step, before the readiness gate opens)."""
    await relist(app)
    log.info("image cache: %d records, %d images", len(app.images.catalog.records), len(app.images.catalog.by_id))


async def refresh(app: App, name: str) -> None:
    """Bring one record in line with containerd (one Images.Get)."""
    cat = app.images.catalog
    async with cat.lock:
        cat.pending.discard(name)          # an event arriving from here on queues another refresh
        try:
            img = (await app.ctrd.images.Get(images_pb.GetImageRequest(name=name))).image
        except errors.NotFound:
            cat.drop(name)
            return
        rec = _record(img)
        cat.put(rec, cat.described.get(rec.target_digest) or await _describe(app, rec))


async def _refresh_logged(app: App, name: str) -> None:
    try:
        await refresh(app, name)
    except errors.CriError as e:      # the relist after the stream's reconnect, or the timer's, corrects it
        log.info("image cache: refreshing %s failed (%s); the next relist corrects it", name, e)


def on_event(app: App, env: Any) -> None:
    """An ``/images/*`` envelope: queue one refresh of the name it carries (repeats coalesce)."""
    if env.topic == "/images/delete":
        name = image_events.ImageDelete.FromString(env.event.value).name
    elif env.topic in ("/images/create", "/images/update"):   # the same fields on the wire
        name = image_events.ImageCreate.FromString(env.event.value).name
    else:
        return
    cat = app.images.catalog
    if not name or name in cat.pending:
        return
    cat.pending.add(name)
    app.spawn(_refresh_logged(app, name), "image-refresh")


async def note_put(app: App, name: str, target: descriptor_pb.Descriptor, labels: dict[str, str]) -> None:
    """criproxy created the record ``name`` with exactly these target and labels: the catalog shows it
    before the caller answers (the kubelet's next call must see its own pull)."""
    cat = app.images.catalog
    async with cat.lock:
        rec = ImageRecord(name=name, target_digest=target.digest, target_media_type=target.media_type,
                          target_size=target.size, labels=dict(labels))
        cat.put(rec, cat.described.get(rec.target_digest) or await _describe(app, rec))


async def note_delete(app: App, name: str) -> None:
    cat = app.images.catalog
    async with cat.lock:
        cat.drop(name)


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
        return normalize(app, app.config.pause_image) in names
    except errors.InvalidArgument:
        return False


def normalize(app: App, ref: str) -> str:
    """The record name a reference or image ID is looked up by (remembered per spelling, bounded)."""
    names = app.images.names
    hit = names.get(ref)
    if hit is None:
        hit = reference.image_id(ref) or str(reference.parse(ref))
        names.put(ref, hit)
    return hit


async def _loaded(app: App) -> None:
    if not app.images.catalog.loaded:     # only before the start step ran (tools, tests)
        await relist(app)


async def entries(app: App) -> list[CatalogEntry]:
    """Every image in the namespace, one entry per image ID, names merged across records."""
    await _loaded(app)
    return app.images.catalog.entries()


async def find(app: App, ref: str) -> CatalogEntry | None:
    """The entry for a tag, digest reference or image ID; None when containerd has no such image.
    An image ID matches whether or not a record carries it as its name (another tool's pull).

    A hit answers from the cache. A miss is confirmed with one Images.Get of that name before it is
    an answer, so an image another tool has just added (``ctr images import`` then CreateContainer)
    is found even before its event arrives; the kubelet asks about an absent image once per pull.
    """
    await _loaded(app)
    name = normalize(app, ref)
    cat = app.images.catalog
    entry = cat.by_id.get(name) or cat.for_name(name)
    if entry is None:
        try:
            await refresh(app, name)
        except errors.CriError as e:        # containerd unreachable: the cache's answer stands
            log.debug("image cache: confirming %s failed (%s)", name, e)
        entry = cat.by_id.get(name) or cat.for_name(name)
    return entry


async def resolve_local(app: App, ref: str) -> LocalImage:
    """The image named by a tag, repo digest or image ID; NotFound if containerd lacks it.

    The read side sandbox and container creation start from; the same lookup as ImageStatus, so
    what kubelet sees as present is exactly what CreateContainer can use.
    """
    entry = await find(app, ref)
    if entry is None:
        raise errors.NotFound(f"image {ref!r} not found")
    return entry.image
