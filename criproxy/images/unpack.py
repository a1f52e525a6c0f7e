"""Unpacking layers into snapshots keyed by chain ID, as containerd's unpacker does (docs/images.md).

Per layer: Stat(chain[i]) → present means done; else Prepare an ``extract-… <chain>`` key on the
parent chain, Diff.Apply the compressed layer onto exactly the mounts Prepare returned, check the
applied digest is the config's diff ID, and Commit it as chain[i]. A concurrent unpack of the same
chain (another pull) shows up as ALREADY_EXISTS and counts as success. Everything happens under the
pull's lease, so an interrupted unpack leaves only objects GC will collect.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

from criproxy import errors, trace
from criproxy.app import App
from criproxy.images.content import update_labels
from criproxy.images.descriptor import Descriptor
from criproxy.labels import SNAPSHOT_REF, UNCOMPRESSED
from criproxy.protos import descriptor_pb, diff_pb, leases_pb, snapshots_pb


async def is_unpacked(app: App, snapshotter: str, chain_id: str) -> bool:
    try:
        await app.ctrd.snapshots.Stat(snapshots_pb.StatSnapshotRequest(snapshotter=snapshotter, key=chain_id))
    except errors.NotFound:
        return False
    return True


async def hold(app: App, lease: str, snapshotter: str, chain_id: str) -> None:
    """Add an existing snapshot to our lease (a Stat does not), so GC keeps it until the image exists."""
    res = leases_pb.Resource(id=chain_id, type=f"snapshots/{snapshotter}")
    await app.ctrd.leases.AddResource(leases_pb.AddResourceRequest(id=lease, resource=res))


def _extract_key(chain_id: str) -> str:
    return f"extract-{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(os.urandom(3)).decode()} {chain_id}"


async def apply_layer(app: App, lease: str, snapshotter: str, layer: Descriptor, diff_id: str,
                      chain_id: str, parent: str) -> bool:
    """Make snapshot ``chain_id`` exist; True if we applied the layer, False if it was already there."""
    if await is_unpacked(app, snapshotter, chain_id):
        await hold(app, lease, snapshotter, chain_id)
        return False
    labels = {SNAPSHOT_REF: chain_id}
    for _ in range(3):
        key = _extract_key(chain_id)
        try:
            prep = await app.ctrd.snapshots.Prepare(snapshots_pb.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=labels), lease=lease)
        except errors.AlreadyExists:
            if await is_unpacked(app, snapshotter, chain_id):
                await hold(app, lease, snapshotter, chain_id)
                return False
            continue
        return await _apply_and_commit(app, lease, snapshotter, key, prep.mounts, layer, diff_id, chain_id)
    raise errors.Unavailable(f"could not prepare snapshot {chain_id}: another unpack keeps colliding")


async def _apply_and_commit(app: App, lease: str, snapshotter: str, key: str, mounts: Any, layer: Descriptor,
                            diff_id: str, chain_id: str) -> bool:
    """Diff.Apply then Commit; any failure removes the half-made active snapshot."""
    try:
        desc = descriptor_pb.Descriptor(media_type=layer.media_type, digest=layer.digest, size=layer.size)
        resp = await app.ctrd.diff.Apply(diff_pb.ApplyRequest(diff=desc, mounts=mounts), lease=lease)
        if resp.applied.digest != diff_id:
            raise errors.FailedPrecondition(f"layer {layer.digest} unpacked to {resp.applied.digest}, "
                                            f"but the image config says {diff_id}")
        try:
            await app.ctrd.snapshots.Commit(snapshots_pb.CommitSnapshotRequest(
                snapshotter=snapshotter, name=chain_id, key=key, labels={SNAPSHOT_REF: chain_id}), lease=lease)
        except errors.AlreadyExists:
            await _remove(app, snapshotter, key)
            await hold(app, lease, snapshotter, chain_id)
            return False
    except BaseException:
        await asyncio.shield(_remove(app, snapshotter, key))
        raise
    await update_labels(app, layer.digest, {UNCOMPRESSED: diff_id})
    trace.note(f"unpacked {layer.digest[:19]} -> {chain_id[:19]}")
    return True


async def _remove(app: App, snapshotter: str, key: str) -> None:
    try:
        await app.ctrd.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))
    except errors.CriError:
        pass
