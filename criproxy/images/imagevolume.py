"""Image volumes (CRI ``Mount.image``, kubelet's ImageVolume): an image's files mounted read-only in a
container, optionally only one directory of it (``image_sub_path``).

The image must already be pulled (kubelet pulls it before CreateContainer). Its layers are exposed
once per image on the host, at ``<root>/image-volumes/<image id>``: a *view* snapshot of the image's
chain (read-only, no upper dir) held by a lease of the same name, mounted read-only there (an
overlay of the layer dirs; one layer is bind-mounted read-only). Every container that mounts the
image bind-mounts that dir (or the sub path in it), so containers share one mount; the last
container's RemoveContainer unmounts it and removes the view and its lease. What is in use is
counted from the container records themselves (each keeps its image mounts in its metadata), so a
restarted criproxy knows without state of its own, and removes at start what no container uses.

A sub path is resolved inside the image's root, one component at a time: ``..`` may not climb above
the root, a symlink is followed only when its target stays inside (an absolute target or one
climbing out is an escape), and the result must be an existing directory (the CRI mounts
directories only, as containerd); anything else is INVALID_ARGUMENT naming the path. The image is
mounted read-only, so nothing can change what was checked before the container starts.

containerd 2.1 keeps one prepared snapshot per pod and image under the pod's dir instead; the
effect in the container is the same (a read-only tree of the image), and one view per node uses
less.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
from pathlib import Path

from criproxy import errors
from criproxy.app import App
from criproxy.images.catalog import resolve_local
from criproxy.oci.imagefiles import layer_dirs
from criproxy.oci.volumes import MAX_LINKS, MOUNT_TIMEOUT, _umount
from criproxy.protos import cri, leases_pb, snapshots_pb
from criproxy.state.image import LocalImage

log = logging.getLogger(__name__)

KEY_PREFIX = "criproxy-imagevolume-"
ERROR_PREFIX = "ImageVolumeMountFailed"     # containerd's (and kubelet's) name for these failures

def volume_key(image_id: str) -> str:
    """Snapshot key and lease ID of an image's view."""
    return KEY_PREFIX + image_id.removeprefix("sha256:")


def volume_dir(app: App, image_id: str) -> Path:
    return app.config.root / "image-volumes" / image_id.removeprefix("sha256:")


def check_mount(m: cri.Mount) -> None:
    """What an image mount may ask (containerd's rules): no host path, read-only, an image named."""
    if m.host_path:
        raise errors.InvalidArgument(f"{ERROR_PREFIX}: image mount at {m.container_path} must not set a "
                                     "host path")
    if not m.readonly:
        raise errors.InvalidArgument(f"{ERROR_PREFIX}: image mount at {m.container_path} must be readonly")
    if m.image_sub_path and ("\0" in m.image_sub_path or os.path.isabs(m.image_sub_path)):
        raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {m.image_sub_path[:200]!r} must be a "
                                     "relative path inside the image")


# ---- the host mount (blocking: run in a thread) ----------------------------------------------------

def is_mounted(target: Path) -> bool:
    """Whether something is mounted at ``target`` (mountinfo: ``os.path.ismount`` misses a bind
    mount of a directory of the same filesystem)."""
    want = str(target).replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ", 5)[4] == want for line in f)


def mount_view(mounts: list[object], target: Path) -> None:
    """Mount the view's layers read-only at ``target`` (nothing when it is already mounted)."""
    if is_mounted(target):
        return
    dirs = layer_dirs(mounts)
    if not dirs:
        raise errors.Internal("the image's view snapshot has no layer directories")
    target.mkdir(parents=True, exist_ok=True)
    if len(dirs) == 1:
        cmd, cwd = ["mount", "--bind", "-o", "ro", dirs[0], str(target)], None
    else:
        cwd = os.path.commonpath(dirs)
        lower = ":".join(os.path.relpath(d, cwd) for d in dirs)
        cmd = ["mount", "-t", "overlay", "-o", f"ro,lowerdir={lower}", "overlay", str(target)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
    if res.returncode != 0:
        with contextlib.suppress(OSError):
            target.rmdir()
        raise errors.Internal(f"{ERROR_PREFIX}: mounting the image read-only failed: {res.stderr.strip()}")


def unmount_view(target: Path) -> None:
    while is_mounted(target):                 # a mount stacked by a crash between checks goes too
        _umount(str(target))
    with contextlib.suppress(OSError):
        target.rmdir()


def resolve_sub_path(root: str, sub: str) -> str:
    """The host path of directory ``sub`` inside ``root``, refusing a path or link that leaves it."""
    parts = [p for p in sub.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if not done:
                raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {sub!r} escapes the image")
            done.pop()
            continue
        path = os.path.join(root, *done, part)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {sub!r} does not exist in the "
                                         "image") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {sub!r}: too many levels of "
                                             "symbolic links")
            target = os.readlink(path)
            if target.startswith("/"):
                raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {sub!r} escapes the image "
                                             f"(absolute link {'/'.join([*done, part])} -> {target})")
            parts[:0] = [p for p in target.split("/") if p and p != "."]
            continue
        done.append(part)
    final = os.path.join(root, *done)
    if not stat.S_ISDIR(os.lstat(final).st_mode):
        raise errors.InvalidArgument(f"{ERROR_PREFIX}: image_sub_path {sub!r} is not a directory (only "
                                     "directories can be mounted)")
    return final


# ---- acquire and release ---------------------------------------------------------------------------

async def _view_mounts(app: App, image: LocalImage, key: str) -> list[object]:
    with contextlib.suppress(errors.AlreadyExists):
        await app.ctrd.leases.Create(leases_pb.CreateRequest(id=key, labels={"criproxy.io/image-volume": image.id}))
    try:
        resp = await app.ctrd.snapshots.View(snapshots_pb.ViewSnapshotRequest(
            snapshotter=app.config.snapshotter, key=key, parent=image.chain_id), lease=key)
    except errors.AlreadyExists:
        resp = await app.ctrd.snapshots.Mounts(snapshots_pb.MountsRequest(snapshotter=app.config.snapshotter,
                                                                          key=key))
    except errors.NotFound:
        raise errors.NotFound(f"{ERROR_PREFIX}: image {image.record_name} is not unpacked for snapshotter "
                              f"{app.config.snapshotter}; pull it again") from None
    return list(resp.mounts)


async def acquire(app: App, image: LocalImage) -> Path:
    """The host dir holding the image's files read-only, made when no container has it yet."""
    target = volume_dir(app, image.id)
    async with app.image_volume_lock:
        app.image_volume_pending[image.id] += 1       # counted until the container record exists
        if await asyncio.to_thread(is_mounted, target):
            return target
        key = volume_key(image.id)
        mounts = await _view_mounts(app, image, key)
        try:
            await asyncio.to_thread(mount_view, mounts, target)
        except BaseException:
            app.image_volume_pending[image.id] -= 1
            await _drop(app, key)
            raise
    return target


def in_use(app: App, image_id: str, excluding: str = "") -> bool:
    if app.image_volume_pending[image_id] > 0:
        return True
    return any(im[2] == image_id for rec in app.containers.values() if rec.id != excluding
               for im in rec.meta.image_mounts)


async def release(app: App, image_ids: set[str], excluding: str = "") -> None:
    """Unmount and drop the views of ``image_ids`` no container other than ``excluding`` mounts."""
    async with app.image_volume_lock:
        for image_id in image_ids:
            if in_use(app, image_id, excluding):
                continue
            try:
                await asyncio.to_thread(unmount_view, volume_dir(app, image_id))
            except OSError as e:
                log.warning("image volume %s: unmount failed: %s", image_id, e)
                continue
            await _drop(app, volume_key(image_id))


async def _drop(app: App, key: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(snapshotter=app.config.snapshotter,
                                                                           key=key))
    await app.ctrd.drop_lease(key)


async def prune(app: App) -> None:
    """A start step after container recovery: the views no recovered container mounts go (their
    containers were removed while criproxy was down, or a create died half way)."""
    base = app.config.root / "image-volumes"
    names = await asyncio.to_thread(lambda: os.listdir(base) if base.is_dir() else [])
    await release(app, {f"sha256:{n}" for n in names})
    resp = await app.ctrd.leases.List(leases_pb.ListRequest(filters=[f"id~=^{KEY_PREFIX}"]))
    await release(app, {lease.labels.get("criproxy.io/image-volume", "") for lease in resp.leases} - {""})


ImageMount = tuple[str, str, str, str]       # container path, host path, image ID, image ref


async def prepare(app: App, undo: contextlib.AsyncExitStack, config: cri.ContainerConfig) -> list[ImageMount]:
    """The container's image mounts with their host paths; every view acquired is released by
    ``undo`` (which the caller pops once the record exists) and stops counting as pending then."""
    out: list[ImageMount] = []
    for m in config.mounts:
        if not m.HasField("image") or not m.image.image:
            continue
        check_mount(m)
        try:
            image = await resolve_local(app, m.image.image)
        except errors.NotFound:
            raise errors.NotFound(f"{ERROR_PREFIX}: image {m.image.image!r} of the mount at {m.container_path} "
                                  "is not present (pull it first)") from None
        root = await acquire(app, image)
        undo.push_async_callback(release, app, {image.id})
        undo.callback(_settle, app, image.id)
        path = str(root)
        if m.image_sub_path:
            path = await asyncio.to_thread(resolve_sub_path, path, m.image_sub_path)
        out.append((m.container_path, path, image.id, (image.repo_digests or [image.id])[0]))
    return out


def _settle(app: App, image_id: str) -> None:
    app.image_volume_pending[image_id] -= 1
    if app.image_volume_pending[image_id] <= 0:
        del app.image_volume_pending[image_id]


def settle(app: App, mounts: list[ImageMount]) -> None:
    """The record now holds these mounts: they stop counting as pending."""
    for _path, _host, image_id, _ref in mounts:
        _settle(app, image_id)
