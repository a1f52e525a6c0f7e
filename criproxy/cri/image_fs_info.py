"""ImageFsInfo: how much the images take, on the snapshotter's filesystem and in the content store.

Mount points are the plugin roots containerd exports through Introspection (so they are right for
any containerd root). Usage counts criproxy's namespace: the committed snapshots (image layers,
through Snapshots.Usage, cached per snapshot since committed snapshots never change) and the
content blobs (their sizes, one inode each). The kubelet calls this every 10 s, so after the first
call it costs three list calls and no per-snapshot work.
"""

from __future__ import annotations

import asyncio
import time

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import content_pb, cri, introspection_pb, snapshots_pb


async def _plugin_root(app: App, plugin_type: str, plugin_id: str) -> str:
    resp = await app.ctrd.introspection.Plugins(introspection_pb.PluginsRequest(
        filters=[f"type=={plugin_type},id=={plugin_id}"]))
    for p in resp.plugins:
        if "root" in p.exports:
            return str(p.exports["root"])
    return ""


async def _snapshot_usage(app: App) -> tuple[int, int]:
    """(bytes, inodes) of the committed snapshots, each measured once."""
    snapshotter = app.config.snapshotter
    cache = app.snapshot_usage
    names = []
    async for resp in app.ctrd.snapshots.List.iterate(snapshots_pb.ListSnapshotsRequest(snapshotter=snapshotter)):
        names += [i.name for i in resp.info if i.kind == snapshots_pb.COMMITTED]
    missing = [n for n in names if n not in cache]
    usages = await asyncio.gather(*(app.ctrd.snapshots.Usage(snapshots_pb.UsageRequest(
        snapshotter=snapshotter, key=n)) for n in missing), return_exceptions=True)
    for name, u in zip(missing, usages, strict=True):
        if not isinstance(u, BaseException):
            cache[name] = (u.size, u.inodes)
    for gone in set(cache) - set(names):
        del cache[gone]
    return sum(cache[n][0] for n in names if n in cache), sum(cache[n][1] for n in names if n in cache)


async def _content_usage(app: App) -> tuple[int, int]:
    size = count = 0
    async for resp in app.ctrd.content.List.iterate(content_pb.ListContentRequest()):
        size += sum(i.size for i in resp.info)
        count += len(resp.info)
    return size, count


def _usage(mountpoint: str, used: tuple[int, int], now: int) -> cri.FilesystemUsage:
    return cri.FilesystemUsage(timestamp=now, fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint),
                               used_bytes=cri.UInt64Value(value=used[0]), inodes_used=cri.UInt64Value(value=used[1]))


@rpc("ImageFsInfo")
async def image_fs_info(app: App, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
    snap_root, content_root, snaps, blobs = await asyncio.gather(
        _plugin_root(app, "io.containerd.snapshotter.v1", app.config.snapshotter),
        _plugin_root(app, "io.containerd.content.v1", "content"), _snapshot_usage(app), _content_usage(app))
    now = time.time_ns()
    snap = _usage(snap_root, snaps, now)
    return cri.ImageFsInfoResponse(image_filesystems=[snap, _usage(content_root, blobs, now)],
                                   container_filesystems=[snap])
