"""containerd image records as the built-in CRI keeps them (docs/images.md, "the three image records").

One pulled image gets up to three records sharing target and labels: the repo tag
(``docker.io/library/busybox:latest``), the repo digest (``…/busybox@sha256:<manifest or index>``)
and the image ID (``sha256:<config digest>``). ImageStatus, ListImages and RemoveImage accept any of
them. Create, and on ALREADY_EXISTS update the target and the managed label (the tag moved).
Each write shows in the image cache (``catalog``) before it returns, so the caller's next read sees it.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from criproxy import errors
from criproxy.app import App
from criproxy.images import catalog
from criproxy.images.descriptor import Descriptor
from criproxy.images.reference import Reference
from criproxy.labels import IMAGE_MANAGED, IMAGE_PINNED
from criproxy.protos import descriptor_pb, images_pb


def names_for(ref: Reference, target_digest: str, image_id: str) -> list[str]:
    """The record names for a pull of ``ref``: tag (if any, and not also pinned by digest), digest, ID."""
    names = []
    if ref.tag and not ref.digest:
        names.append(ref.tagged)
    names.append(f"{ref.repository}@{target_digest}")
    names.append(image_id)
    return names


def labels_for(pinned: bool) -> dict[str, str]:
    labels = {IMAGE_MANAGED: "managed"}
    if pinned:
        labels[IMAGE_PINNED] = "pinned"
    return labels


async def put(app: App, name: str, target: Descriptor, labels: dict[str, str]) -> None:
    """Create or retarget one record."""
    img = images_pb.Image(name=name, labels=labels, target=descriptor_pb.Descriptor(
        media_type=target.media_type, digest=target.digest, size=target.size))
    try:
        await app.ctrd.images.Create(images_pb.CreateImageRequest(image=img))
        await catalog.note_put(app, name, img.target, labels)
        return
    except errors.AlreadyExists:
        pass
    paths = ["target", *(f"labels.{k}" for k in labels)]
    try:
        await app.ctrd.images.Update(images_pb.UpdateImageRequest(
            image=img, update_mask=field_mask_pb2.FieldMask(paths=paths)))
    except errors.NotFound:
        await app.ctrd.images.Create(images_pb.CreateImageRequest(image=img))
    try:
        await catalog.refresh(app, name)   # an update keeps labels set by others: read the result
    except errors.CriError:                # the record is written: show what we wrote; events correct it
        await catalog.note_put(app, name, img.target, labels)


async def put_all(app: App, names: list[str], target: Descriptor, labels: dict[str, str]) -> None:
    for name in names:
        await put(app, name, target, labels)


async def delete(app: App, name: str, sync: bool = False) -> bool:
    """Delete one record; False when it was already gone."""
    try:
        await app.ctrd.images.Delete(images_pb.DeleteImageRequest(name=name, sync=sync))
    except errors.NotFound:
        await catalog.note_delete(app, name)
        return False
    await catalog.note_delete(app, name)
    return True
