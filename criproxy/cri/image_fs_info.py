"""ImageFsInfo: how much the images take, on the snapshotter's filesystem and in the content store.

The figure is measured in the background (``images/usage.py``): a call answers the last one, so
the kubelet's call every 10 s costs no containerd call and no per-snapshot work; only the first
call after start waits for a measurement.
"""

from __future__ import annotations

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.images import usage as image_usage
from criproxy.protos import cri


def _usage(mountpoint: str, used: tuple[int, int], now: int) -> cri.FilesystemUsage:
    return cri.FilesystemUsage(timestamp=now, fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint),
                               used_bytes=cri.UInt64Value(value=used[0]), inodes_used=cri.UInt64Value(value=used[1]))


@rpc("ImageFsInfo")
async def image_fs_info(app: App, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
    u = await image_usage.current(app)
    snap = _usage(u.snapshot_root, u.snapshots, u.measured_at)
    return cri.ImageFsInfoResponse(image_filesystems=[snap, _usage(u.content_root, u.content, u.measured_at)],
                                   container_filesystems=[snap])
