"""How much the images take: the figure ImageFsInfo answers, measured in the background.

Usage counts criproxy's namespace: the committed snapshots (image layers, one Snapshots.Usage each,
kept per snapshot since a committed snapshot never changes, at most ``USAGE_PARALLEL`` at a time)
and the content blobs (their sizes, one inode each). Mount points are the plugin roots containerd
exports through Introspection, asked once. The kubelet asks every 10 s; measuring on its call would
put a snapshot walk (and, the first time, one Usage per snapshot) on that call, so the call answers
the last figure and, when that is older than ``USAGE_PERIOD``, starts one refresh in the background
(as containerd's CRI answers from its snapshot syncer). Only the very first call waits for a figure.
"""

from __future__ import annotations

import asyncio
import logging
import time

from criproxy import errors
from criproxy.app import App
from criproxy.protos import content_pb, introspection_pb, snapshots_pb
from criproxy.state.image import FsUsage

log = logging.getLogger("criproxy.images.usage")
USAGE_PERIOD = 10.0        # seconds a figure is answered before a refresh starts
USAGE_PARALLEL = 4         # Snapshots.Usage calls at once (each walks a snapshot's files)


async def _plugin_root(app: App, plugin_type: str, plugin_id: str) -> str:
    resp = await app.ctrd.introspection.Plugins(introspection_pb.PluginsRequest(
        filters=[f"type=={plugin_type},id=={plugin_id}"]))
    for p in resp.plugins:
        if "root" in p.exports:
            return str(p.exports["root"])
    return ""


async def _snapshots(app: App, usage: FsUsage) -> tuple[int, int]:
    """(bytes, inodes) of the committed snapshots, each measured once."""
    snapshotter = app.config.snapshotter
    cache = usage.per_snapshot
    names: list[str] = []
    async for resp in app.ctrd.snapshots.List.iterate(snapshots_pb.ListSnapshotsRequest(snapshotter=snapshotter)):
        names += [i.name for i in resp.info if i.kind == snapshots_pb.COMMITTED]
    sem = asyncio.Semaphore(USAGE_PARALLEL)

    async def one(name: str) -> None:
        async with sem:
            try:
                u = await app.ctrd.snapshots.Usage(snapshots_pb.UsageRequest(snapshotter=snapshotter, key=name))
            except errors.CriError:
                return                      # removed meanwhile, or unreadable: not counted this time
            cache[name] = (u.size, u.inodes)
    await asyncio.gather(*(one(n) for n in names if n not in cache))
    present = set(names)
    for gone in [n for n in cache if n not in present]:
        del cache[gone]
    return sum(cache[n][0] for n in names if n in cache), sum(cache[n][1] for n in names if n in cache)


async def _content(app: App) -> tuple[int, int]:
    size = count = 0
    async for resp in app.ctrd.content.List.iterate(content_pb.ListContentRequest()):
        size += sum(i.size for i in resp.info)
        count += len(resp.info)
    return size, count


async def measure(app: App) -> None:
    """One measurement into ``app.images.usage``."""
    usage = app.images.usage
    if not usage.snapshot_root:
        usage.snapshot_root, usage.content_root = await asyncio.gather(
            _plugin_root(app, "io.containerd.snapshotter.v1", app.config.snapshotter),
            _plugin_root(app, "io.containerd.content.v1", "content"))
    usage.snapshots, usage.content = await asyncio.gather(_snapshots(app, usage), _content(app))
    usage.measured_at, usage.measured_mono = time.time_ns(), time.monotonic()


async def _measure_logged(app: App) -> None:
    try:
        await measure(app)
    except errors.CriError as e:
        log.info("image filesystem usage: measuring failed (%s); the last figure stands", e)
    finally:
        app.images.usage.refreshing = None


async def current(app: App) -> FsUsage:
    """The figure to answer: the first call waits for one; later ones get the last, and start a
    refresh in the background when it is older than USAGE_PERIOD."""
    usage = app.images.usage
    if not usage.measured_at:
        await measure(app)                   # its errors are the caller's: there is nothing to answer yet
    elif time.monotonic() - usage.measured_mono > USAGE_PERIOD and usage.refreshing is None:
        usage.refreshing = app.spawn(_measure_logged(app), "image-fs-usage")
    return usage
