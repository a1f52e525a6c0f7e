"""CreateContainer: a containerd container with a snapshot from the image and an OCI spec; no task yet.

Order (containerd's Go client NewContainer): reserve the name → resolve the image (the image cache) →
Snapshots.Prepare(key = container ID, parent = the image's chain ID) under criproxy's creation lease →
build the spec → Containers.Create → record → the snapshot leaves the lease (the record holds it now).
A failure part way undoes what was made, in reverse. A kubelet retry with the same name gets the first
call's outcome (awaited while in flight) instead of "reserved".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable
from dataclasses import replace

from criproxy import errors, nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.container.spec import container_apparmor, container_spec
from criproxy.container.task import container_root, publish
from criproxy.cri import rpc
from criproxy.images import imagevolume
from criproxy.images.catalog import resolve_local
from criproxy.labels import CONTAINER_METADATA
from criproxy.oci import imagefiles, volumes
from criproxy.protos import containers_pb, cri, leases_pb, mount_pb, snapshots_pb
from criproxy.state.container import ContainerHandles, ContainerMetadata, ContainerRecord
from criproxy.state.image import LocalImage
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import checks
from criproxy.translate import container as t
from criproxy.translate.sandbox import handler_snapshotter


def _ready_sandbox(app: App, sandbox_id: str) -> SandboxRecord:
    sb = app.sandboxes.get(sandbox_id)
    if not sb.ready:
        raise errors.FailedPrecondition(f"pod sandbox {sb.id} is not ready")
    return sb


def _validate(config: cri.ContainerConfig) -> None:
    if not config.metadata.name:
        raise errors.InvalidArgument("container config must include metadata.name")
    if not config.image.image:
        raise errors.InvalidArgument("container config must name an image")
    _validate_log_path(config.log_path)
    checks.labels("container config", config.labels)
    if config.working_dir and (not config.working_dir.startswith("/") or "\0" in config.working_dir):
        # runc refuses a relative cwd only when the task is created (containerd 2.x already at
        # Containers.Create, as an unclassified error): refuse it before anything is made.
        raise errors.InvalidArgument(f"container working_dir {config.working_dir[:200]!r} must be an absolute path")


def _validate_log_path(path: str) -> None:
    """log_path is relative to the pod's log directory and must stay inside it: criproxy (root)
    creates and writes that file, so an absolute or ``..``-escaping path would write anywhere."""
    if not path:
        return
    if "\0" in path:
        raise errors.InvalidArgument("container log_path contains a NUL character")
    if os.path.isabs(path):
        raise errors.InvalidArgument(f"container log_path {path[:200]!r} must be relative to the pod's "
                                     "log directory")
    norm = os.path.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise errors.InvalidArgument(f"container log_path {path[:200]!r} leaves the pod's log directory")


async def _retry_outcome(app: App, name: str, request: cri.CreateContainerRequest) -> str | None:
    """The ID to answer a retried CreateContainer with, None for a new name; AlreadyExists for a
    different container under a name that is taken."""
    joined, cid = await app.containers.creating.join(name)
    if joined:
        return cid
    holder = app.container_names.holder(name)
    if holder is None:
        return None
    rec = app.containers.find(holder)
    if rec is not None and rec.sandbox_id == request.pod_sandbox_id and \
            rec.config.SerializeToString(deterministic=True) == request.config.SerializeToString(deterministic=True):
        return rec.id
    raise errors.AlreadyExists(f"container name {name!r} is reserved for {holder}")


async def _sandbox_runtime(app: App, sandbox: SandboxRecord) -> containers_pb.Container.Runtime:
    """The sandbox container's runtime name and options: a pod's containers use the same. The record
    has it from RunPodSandbox or recovery; read once from containerd only if it does not."""
    if sandbox.runtime is None:
        sandbox.runtime = (await app.ctrd.containers.Get(containers_pb.GetContainerRequest(id=sandbox.id))
                           ).container.runtime
    return sandbox.runtime


def _log_path(sandbox: SandboxRecord, config: cri.ContainerConfig) -> str:
    if not config.log_path or not sandbox.config.log_directory:
        return ""
    return os.path.join(sandbox.config.log_directory, config.log_path)


def _record(cid: str, name: str, request: cri.CreateContainerRequest, sandbox: SandboxRecord,
            image: LocalImage) -> ContainerRecord:
    config = request.config
    return ContainerRecord(ContainerMetadata(
        id=cid, name=name, sandbox_id=sandbox.id, config=config, created_at=time.time_ns(),
        image_name=(image.repo_tags or [config.image.image])[0], image_id=image.id,
        image_ref=(image.repo_digests or [image.id])[0], log_path=_log_path(sandbox, config)),
        handles=ContainerHandles(sandbox_config=sandbox.config))


def _containerd_container(app: App, rec: ContainerRecord, image: LocalImage, spec: dict[str, object],
                          runtime: containers_pb.Container.Runtime, snapshotter: str) -> containers_pb.Container:
    img_labels = (image.config.get("config") or {}).get("Labels") or {}
    c = containers_pb.Container(id=rec.id, labels=t.containerd_labels(rec.config, img_labels, rec.sandbox_id),
                                image=image.record_name, runtime=runtime, snapshotter=snapshotter,
                                snapshot_key=rec.id)
    c.spec.type_url = t.SPEC_TYPE_URL
    c.spec.value = json.dumps(spec, separators=(",", ":")).encode()
    ext = c.extensions[CONTAINER_METADATA]
    ext.type_url, ext.value = t.METADATA_TYPE_URL, t.metadata_json(rec)
    return c


async def _remove_snapshot(app: App, key: str, snapshotter: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))


async def _remove_snapshot_after(app: App, key: str, snapshotter: str, prepare: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await prepare
    await _remove_snapshot(app, key, snapshotter)


async def _prepare(app: App, cid: str, image: LocalImage, lease: str, snapshotter: str) -> list[mount_pb.Mount]:
    try:
        resp = await app.ctrd.snapshots.Prepare(snapshots_pb.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=cid, parent=image.chain_id), lease=lease)
    except errors.NotFound:
        app.create_lease = None          # the lease may have been removed (by hand): the next call makes a new one
        raise errors.NotFound(f"image {image.record_name} is not unpacked for snapshotter "
                              f"{snapshotter}; pull it again (for the pod's runtime handler)") from None
    return list(resp.mounts)


LEASE_PREFIX = "criproxy-create-"
LEASE_OWNER_LABEL = "criproxy.io/create-owner"
LEASE_ROTATE_NS = 12 * 3600 * 1_000_000_000


async def drop_create_leases(app: App) -> None:
    """Delete this criproxy's creation leases (a start and a stop step): at shutdown (no
    CreateContainer is in flight once the server has drained) and at start (a killed criproxy's: a
    snapshot only it held belongs to a CreateContainer that never answered, and is garbage). "This
    criproxy" is its CRI socket, kept in a label, so another criproxy sharing the namespace keeps its
    own lease."""
    app.create_lease = None
    flt = f'labels."{LEASE_OWNER_LABEL}"=="{_owner(app)}"'
    resp = await app.ctrd.leases.List(leases_pb.ListRequest(filters=[flt]))
    for lease in resp.leases:
        if lease.id.startswith(LEASE_PREFIX) and lease.labels.get(LEASE_OWNER_LABEL) == _owner(app):
            await app.ctrd.drop_lease(lease.id)


def _owner(app: App) -> str:
    return str(app.config.listen)


async def _create_lease(app: App) -> str:
    """The process's creation lease: made once and rotated every 12 h, so CreateContainer pays no
    Leases.Create; each snapshot leaves it (DeleteResource, in the background) once its container
    record protects it."""
    held = app.create_lease
    now = time.time_ns()
    if held is None or now - held[1] > LEASE_ROTATE_NS:
        lease_id = await app.ctrd.new_lease("create", {LEASE_OWNER_LABEL: _owner(app)})
        app.create_lease = (lease_id, now)
        if held is not None:
            app.spawn(_drop_lease_later(app, held[0]), "lease-rotate")
        return lease_id
    return held[0]


async def _drop_lease_later(app: App, lease_id: str) -> None:
    await asyncio.sleep(600)          # creates still running under the old lease finish first
    await app.ctrd.drop_lease(lease_id)


async def _release_snapshot(app: App, lease_id: str, key: str, snapshotter: str) -> None:
    with contextlib.suppress(errors.CriError):
        await app.ctrd.leases.DeleteResource(leases_pb.DeleteResourceRequest(
            id=lease_id, resource=leases_pb.Resource(id=key, type=f"snapshots/{snapshotter}")))


async def _build(app: App, undo: contextlib.AsyncExitStack, rec: ContainerRecord, sandbox: SandboxRecord,
                 image: LocalImage, lease: str, apparmor_profile: str) -> None:
    """Snapshot, spec and container record under ``lease``; the snapshot is undone on failure."""
    snapshotter = rec.handles.snapshotter = handler_snapshotter(app.config, sandbox.runtime_handler)
    prepare = asyncio.ensure_future(_prepare(app, rec.id, image, lease, snapshotter))   # shielded: see Create
    undo.push_async_callback(_remove_snapshot_after, app, rec.id, snapshotter, prepare)
    mounts = await asyncio.shield(prepare)
    rec.handles.mounts = mounts
    files = await asyncio.to_thread(imagefiles.read_user_files, mounts)     # untrusted image content
    volumes = await _seed_volumes(app, undo, rec, image, mounts)
    image_mounts = await imagevolume.prepare(app, undo, rec.config)
    rec.meta = replace(rec.meta, image_mounts=tuple(image_mounts))
    # In a thread: the spec reads host facts of a size the request chooses (a device directory to
    # walk, a Localhost seccomp file, mountinfo), which must not hold up the event loop.
    result = await asyncio.to_thread(container_spec, app, rec.id, rec.config, sandbox, image, files, volumes,
                                     apparmor_profile, {m[0]: m[1] for m in image_mounts})
    await nrihooks.create_container(app, sandbox, rec, result.spec)    # NRI plugins adjust the spec
    ident = result.identity
    rec.meta = replace(rec.meta, uid=ident.uid, gid=ident.gid, groups=tuple(ident.groups),
                       stop_signal=result.stop_signal, process=json.dumps(result.spec["process"]))
    rec.handles.applied = t.spec_resources(result.spec["process"], result.spec["linux"].get("resources"))
    runtime = await _sandbox_runtime(app, sandbox)
    # Shielded: a caller giving up must not cut the call short on our side while containerd still
    # commits it; the undo waits for the call's outcome, then deletes.
    create = asyncio.ensure_future(app.ctrd.containers.Create(containers_pb.CreateContainerRequest(
        container=_containerd_container(app, rec, image, result.spec, runtime, snapshotter)), lease=lease))
    undo.push_async_callback(_delete_container, app, rec.id, create)
    await asyncio.shield(create)


async def _seed_volumes(app: App, undo: contextlib.AsyncExitStack, rec: ContainerRecord, image: LocalImage,
                        mounts: list[mount_pb.Mount]) -> list[tuple[str, str]]:
    """A dir per image VOLUME not covered by a CRI mount, holding the image's content there."""
    wanted = volumes.image_volumes(image.config, [m.container_path for m in rec.config.mounts])
    if not wanted:
        return []
    root = container_root(app, rec.id)
    undo.push_async_callback(asyncio.to_thread, volumes.remove_container_root, root)
    return await asyncio.to_thread(volumes.seed_volumes, root, mounts, wanted)


async def _delete_container(app: App, cid: str, create: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await create
    with contextlib.suppress(errors.NotFound):
        await app.ctrd.containers.Delete(containers_pb.DeleteContainerRequest(id=cid))




async def _create(app: App, request: cri.CreateContainerRequest, sandbox: SandboxRecord, name: str) -> str:
    cid = os.urandom(32).hex()
    async with contextlib.AsyncExitStack() as undo:
        app.container_names.reserve(name, cid)
        undo.callback(app.container_names.release, name)
        apparmor_profile = await container_apparmor(app, request.config)
        image = await resolve_local(app, request.config.image.image)    # the image cache: no containerd call
        lease = await _create_lease(app)
        rec = _record(cid, name, request, sandbox, image)
        async with nrihooks.lifecycle(app):       # a syncing NRI plugin sees it once: synced or as an event
            await _build(app, undo, rec, sandbox, image, lease, apparmor_profile)
            app.containers.add(rec)
        app.containers.persist(rec)
        undo.pop_all()
        imagevolume.settle(app, list(rec.meta.image_mounts))
        app.spawn(_release_snapshot(app, lease, cid, rec.handles.snapshotter), f"lease-{cid[:12]}")
    publish(app, rec, cri.CONTAINER_CREATED_EVENT)
    await nrihooks.post_event(app, api.POST_CREATE_CONTAINER, rec)
    return cid


@rpc("CreateContainer")
async def create_container(app: App, request: cri.CreateContainerRequest) -> cri.CreateContainerResponse:
    _validate(request.config)
    sandbox = _ready_sandbox(app, request.pod_sandbox_id)
    name = t.container_name(request.config.metadata, sandbox.config.metadata)
    earlier = await _retry_outcome(app, name, request)
    if earlier is not None:
        return cri.CreateContainerResponse(container_id=earlier)
    cid = await app.containers.creating.run(name, lambda: _create(app, request, sandbox, name))
    return cri.CreateContainerResponse(container_id=cid)
