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


def _all_names(entry: catalog.CatalogEntry) -> list[str]:
    """Names of every record of this image ID (the cache merges records pointing at another target
    of the same image, index vs manifest)."""
    return sorted(entry.image.names, key=lambda n: (n == entry.image.id, n))  # the ID record goes last


@rpc("RemoveImage")
async def remove_image(app: App, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("RemoveImage: image.image is empty")
    entry = await catalog.find(app, ref)
    if entry is None:
        return cri.RemoveImageResponse()
    names = _all_names(entry)
    for i, name in enumerate(names):
        await records.delete(app, name, sync=i == len(names) - 1)
    return cri.RemoveImageResponse()
