"""Pulling an image into containerd the way a containerd-native pull lands it (docs/images.md).

Order: take a lease → resolve the reference → write the index (if any) and pick this host's
manifest → write the manifest → download config and layers concurrently (at most MAX_DOWNLOADS
layers at once, in order) while unpacking them in order onto the chain-ID snapshot chain → label the config with
its snapshot → create the image records → drop the lease. Everything is written under the lease,
so a pull that dies half way leaves only objects containerd's GC collects; leases left by a
criproxy that was killed are deleted at the next start.

On containerd 2.x the fetch and unpack can be left to the daemon's Transfer service instead
(``pull_method``, images/transfer.py); the records written afterwards are the same.

Callers: ``pull_image`` (the PullImage handler) and ``ensure_image`` (the sandbox code, for the
pause image). Concurrent pulls of one reference share one task; concurrent pulls of different
references share blob downloads and layer unpacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from criproxy import errors, trace
from criproxy.app import App
from criproxy.images import content, manifest, records, reference, transfer, unpack
from criproxy.images.auth import Credentials, from_auth_config
from criproxy.images.catalog import resolve_local
from criproxy.images.descriptor import Descriptor
from criproxy.images.local import LocalImage, chain_ids, check_size, describe, read_blob, read_json
from criproxy.labels import GC_REF_SNAPSHOT, PULL_LEASE
from criproxy.protos import descriptor_pb, leases_pb

if TYPE_CHECKING:
    from criproxy.images.registry import Registry

log = logging.getLogger("criproxy.images.pull")

PROGRESS_LOG_EVERY = 5.0
MAX_DOWNLOADS = 3  # layer downloads at once per pull, containerd's max_concurrent_downloads default


async def ensure_image(app: App, ref: str) -> LocalImage:
    """The image named by ``ref``, pulled first (without credentials) when containerd lacks it, and
    unpacked when its snapshots are missing (pulled by another tool without unpack, or collected)."""
    try:
        image = await resolve_local(app, ref)
    except errors.NotFound:
        return await pull_image(app, ref)
    await ensure_unpacked(app, image)
    return image


async def ensure_unpacked(app: App, image: LocalImage, snapshotter: str = "") -> None:
    """Unpack a local image's layers from the content store if its top snapshot is missing.

    What containerd's CRI does when a container's snapshot Prepare answers NOT_FOUND. The content
    must be local (NotFound from Diff.Apply otherwise); nothing is fetched from a registry.
    """
    snapshotter = snapshotter or app.config.snapshotter
    if not image.chain_id or await unpack.is_unpacked(app, snapshotter, image.chain_id):
        return
    doc = await read_json(app, image.manifest_digest)
    layers = manifest.parse_manifest(doc, str(doc.get("mediaType", ""))).layers
    diff_ids = manifest.diff_ids(image.config, len(layers))
    chains = chain_ids(diff_ids)
    async with app.ctrd.lease("pull", {PULL_LEASE: str(app.config.listen)}) as lease:
        parent = ""
        for layer, diff_id, chain in zip(layers, diff_ids, chains, strict=True):
            await _unpack_shared(app, lease, layer, diff_id, chain, parent, snapshotter)
            parent = chain
        await content.update_labels(app, image.id, {GC_REF_SNAPSHOT + snapshotter: chains[-1]})
    trace.note(f"unpacked {image.id} from local content ({len(layers)} layers)")


def is_pinned(app: App, ref: reference.Reference) -> bool:
    """The sandbox (pause) image is pinned: the kubelet's image GC must never remove it."""
    try:
        return str(reference.parse(app.config.pause_image)) == str(ref)
    except errors.InvalidArgument:
        return False


async def pull_image(app: App, ref: str, auth: Any = None) -> LocalImage:
    """Pull ``ref`` (CRI AuthConfig or Credentials in ``auth``); one shared pull per reference."""
    parsed = reference.parse(ref)
    creds = auth if isinstance(auth, Credentials) else from_auth_config(auth)
    key = f"{parsed}|{creds.key()}"
    op, joined = app.images.pulls.spawn(key, lambda: _watched_pull(app, parsed, creds), app.spawn, f"pull {parsed}")
    if joined:
        trace.note(f"joined the pull of {parsed} already in progress")
    return await app.images.pulls.wait(op)


async def _watched_pull(app: App, ref: reference.Reference, creds: Credentials) -> LocalImage:
    """Run the pull, cancelling it when no bytes arrive for ``pull_progress_timeout`` seconds."""
    progress = content.Progress()
    work = asyncio.ensure_future(_pull(app, ref, creds, progress))
    limit = app.config.pull_progress_timeout
    started = last_log = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=min(1.0, limit / 4) if limit > 0 else None)
            if done:
                return work.result()
            if limit > 0 and progress.stalled_for() > limit:
                raise errors.DeadlineExceeded(
                    f"pull of {ref} cancelled: no bytes received from the registry for {limit:.0f}s "
                    f"({progress.describe()}); raise --pull-progress-timeout for slow registries")
            if time.monotonic() - last_log >= PROGRESS_LOG_EVERY:
                last_log = time.monotonic()
                log.info("pulling %s: %s after %.0fs", ref, progress.describe(), last_log - started)
    finally:
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)


async def _pull(app: App, ref: reference.Reference, creds: Credentials, progress: content.Progress) -> LocalImage:
    if await _use_transfer(app, creds):
        try:
            return await transfer.pull(app, ref, creds, progress, is_pinned(app, ref))
        except errors.Unimplemented:     # containerd was replaced by one without Transfer: own client
            if app.config.pull_method == "transfer":
                raise
            log.info("containerd answered UNIMPLEMENTED to a Transfer pull: pulling %s with the own client", ref)
    started = time.monotonic()
    from criproxy.images.registry import Registry  # aiohttp loads on the first pull, not at start-up

    reg = Registry(app, ref, creds)
    log.info("pulling %s", ref)
    async with app.ctrd.lease("pull", {PULL_LEASE: str(app.config.listen)}) as lease:
        root, body = await reg.manifest(ref.digest or ref.tag, resolve=not ref.digest)
        trace.note(f"resolved {ref} to {root.media_type} {root.digest}")
        src = dict([manifest.source_label(ref.domain, ref.path)])
        man_desc, man_doc = await _platform_manifest(app, reg, lease, root, body, src)
        man = manifest.parse_manifest(man_doc, man_desc.media_type)
        chains = await _content_and_snapshots(app, reg, lease, man, progress, src)
        if chains:
            await content.update_labels(app, man.config.digest,
                                        {GC_REF_SNAPSHOT + app.config.snapshotter: chains[-1]})
        names = records.names_for(ref, root.digest, man.config.digest)
        await records.put_all(app, names, root, records.labels_for(is_pinned(app, ref)))
    note = f"pulled {ref} ({man.config.digest}): {progress.describe()} in {time.monotonic() - started:.2f}s"
    log.info("%s", note)
    trace.note(note)
    target = descriptor_pb.Descriptor(media_type=root.media_type, digest=root.digest, size=root.size)
    return await describe(app, target, sorted(names))


async def _use_transfer(app: App, creds: Credentials) -> bool:
    """Whether this pull goes through containerd's Transfer service (``pull_method``, images/transfer.py)."""
    method = app.config.pull_method
    if method == "own" or not transfer.supports(creds):
        return False
    if await transfer.available(app):
        return True
    if method == "transfer":
        raise errors.FailedPrecondition("pull_method is transfer, but this containerd has no Transfer "
                                        "service (it needs containerd 2.0 or later); use auto or own")
    return False


async def _platform_manifest(app: App, reg: Registry, lease: str, root: Descriptor, body: bytes,
                             src: dict[str, str]) -> tuple[Descriptor, dict[str, Any]]:
    """Write the root blob; for an index, pick this host's manifest, fetch and write it too."""
    doc = manifest.load(body, f"manifest {root.digest}")
    await content.write(app, lease, manifest.write_kind(root.media_type), root,
                        {**manifest.child_labels(doc, root.media_type), **src}, data=body)
    if root.media_type not in manifest.INDEX_TYPES:
        return root, doc
    chosen = manifest.pick_platform(doc)
    desc, man_body = await reg.manifest(chosen.digest, resolve=False)
    if desc.size != chosen.size:
        raise errors.FailedPrecondition(f"manifest {chosen.digest}: {desc.size} bytes, index says {chosen.size}")
    desc = Descriptor(chosen.media_type or desc.media_type, desc.digest, desc.size, chosen.annotations)
    man_doc = manifest.load(man_body, f"manifest {desc.digest}")
    trace.note(f"picked {desc.digest} for {manifest.host_platform()}")
    await content.write(app, lease, "manifest", desc, {**manifest.child_labels(man_doc, desc.media_type), **src},
                        data=man_body)
    return desc, man_doc


async def _content_and_snapshots(app: App, reg: Registry, lease: str, man: manifest.ImageManifest,
                                 progress: content.Progress, src: dict[str, str]) -> list[str]:
    """Download the config and the layers concurrently (at most MAX_DOWNLOADS layers at once, in
    order), then unpack each layer as soon as it and its parent are in, so applying layer i overlaps
    downloading layers i+1…; returns the chain IDs."""
    progress.total, progress.layers_total = sum(x.size for x in man.layers), len(man.layers)
    gate = asyncio.Semaphore(MAX_DOWNLOADS)

    async def fetch(layer: Descriptor) -> None:
        async with gate:
            await _fetch_shared(app, reg, lease, layer, progress, src)
    fetches = [asyncio.ensure_future(fetch(layer)) for layer in man.layers]
    try:
        config_body = await _config_shared(app, reg, lease, man.config, src)
        diff_ids = manifest.diff_ids(manifest.load(config_body, f"config {man.config.digest}"), len(man.layers))
        chains = chain_ids(diff_ids)
        parent = ""
        for i, layer in enumerate(man.layers):
            await fetches[i]
            await _unpack_shared(app, lease, layer, diff_ids[i], chains[i], parent)
            parent = chains[i]
            progress.layers_done += 1
        return chains
    finally:
        for f in fetches:
            f.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)


async def _fetch_shared(app: App, reg: Registry, lease: str, layer: Descriptor, progress: content.Progress,
                        src: dict[str, str]) -> None:
    """Write one layer blob (downloaded only if containerd lacks it), one download per digest."""
    async with app.images.blob_turns.hold(layer.digest):
        await content.write(app, lease, "layer", layer, src, source=lambda: reg.blob(layer), progress=progress)


async def _config_shared(app: App, reg: Registry, lease: str, desc: Descriptor, src: dict[str, str]) -> bytes:
    """The config bytes: from containerd when it has them (re-pull, concurrent pull), else the registry."""
    check_size("config", desc.digest, desc.size, manifest.MAX_CONFIG)    # before any read
    async with app.images.blob_turns.hold(desc.digest):
        try:
            data = await read_blob(app, desc.digest, manifest.MAX_CONFIG)
        except errors.NotFound:
            data = b""
        if len(data) != desc.size or "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
            data = await reg.small_blob(desc)
        await content.write(app, lease, "config", desc, src, data=data)
        return data


async def _unpack_shared(app: App, lease: str, layer: Descriptor, diff_id: str, chain: str, parent: str,
                         snapshotter: str = "") -> None:
    """Apply one layer, one unpack per chain ID at a time in this process."""
    async with app.images.unpack_turns.hold(chain):
        await unpack.apply_layer(app, lease, snapshotter or app.config.snapshotter, layer, diff_id, chain, parent)


async def drop_stale_pull_leases(app: App) -> None:
    """Leases of pulls a killed criproxy left behind: delete them so GC collects their content.

    Only this criproxy's: the label holds its CRI socket, so another criproxy sharing the namespace
    keeps the leases of the pulls it has in flight."""
    owner = str(app.config.listen)
    resp = await app.ctrd.leases.List(leases_pb.ListRequest(filters=[f'labels."{PULL_LEASE}"=="{owner}"']))
    for lease in resp.leases:
        if lease.labels.get(PULL_LEASE) != owner:
            continue
        with contextlib.suppress(errors.NotFound):
            await app.ctrd.leases.Delete(leases_pb.DeleteRequest(id=lease.id))
        log.info("deleted lease %s of an interrupted pull", lease.id)


async def close_http(app: App) -> None:
    """Close the registry session, if a pull made one."""
    session, app.images.http = app.images.http, None
    if session is not None:
        await session.close()
