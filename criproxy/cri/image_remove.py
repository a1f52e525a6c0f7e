"""RemoveImage: delete every record of the image (tag, digest reference, ID), idempotently.

Given any one name, all records whose target resolves to the same image ID go, so the image
disappears from ListImages whichever name the caller used. The last delete is synchronous, so
containerd's GC has freed the content and snapshots by the time we answer (as the built-in CRI
does). An unknown image is success: the kubelet treats cleanup of a missing object as done.
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.images import catalog, records
from criproxy.protos import cri


async def _all_names(app: App, entry: catalog.CatalogEntry) -> list[str]:
    """Names of every record of this image ID, even ones pointing at another target (index vs manifest)."""
    names = set(entry.image.names)
    for e in await catalog.entries(app):
        if e.image.id == entry.image.id:
            names.update(e.image.names)
    return sorted(names, key=lambda n: (n == entry.image.id, n))  # the ID record goes last


@rpc("RemoveImage")
async def remove_image(app: App, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("RemoveImage: image.image is empty")
    entry = await catalog.find(app, ref)
    if entry is None:
        return cri.RemoveImageResponse()
    names = await _all_names(app, entry)
    for i, name in enumerate(names):
        await records.delete(app, name, sync=i == len(names) - 1)
    return cri.RemoveImageResponse()
