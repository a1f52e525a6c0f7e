"""ListImages: every image in criproxy's namespace, one per image ID, optionally filtered.

The filter's ``image.image`` may be a tag, a digest reference or an image ID; it narrows the list
to that one image (an empty list when absent), which is how crictl's ``images NAME`` asks.
"""

from __future__ import annotations

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.images import catalog
from criproxy.protos import cri


async def list_cri_images(app: App, flt: cri.ImageFilter | None) -> list[cri.Image]:
    """The CRI images the filter selects (shared with StreamImages)."""
    if flt is not None and flt.image.image:
        entry = await catalog.find(app, flt.image.image)
        return [] if entry is None else [catalog.to_cri(app, entry)]
    return [catalog.to_cri(app, e) for e in await catalog.entries(app)]


@rpc("ListImages")
async def list_images(app: App, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
    flt = request.filter if request.HasField("filter") else None
    return cri.ListImagesResponse(images=await list_cri_images(app, flt))
