"""ListImages: every image in criproxy's namespace, one per image ID, optionally filtered.

The filter's ``image.image`` may be a tag, a digest reference or an image ID; it narrows the list
to that one image (an empty list when absent), which is how crictl's ``images NAME`` asks.
Answered from the image cache (``images/catalog.py``); the unfiltered answer is kept serialized until
the cache changes (the kubelet asks every few seconds).
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
async def list_images(app: App, request: cri.ListImagesRequest) -> cri.ListImagesResponse | bytes:
    flt = request.filter if request.HasField("filter") else None
    if flt is not None and flt.image.image:
        return cri.ListImagesResponse(images=await list_cri_images(app, flt))
    await catalog.entries(app)            # loads the cache if nothing has yet
    cat = app.images.catalog
    raw = cat.list_answer
    if raw is None:
        raw = cat.list_answer = cri.ListImagesResponse(
            images=[catalog.to_cri(app, e) for e in cat.entries()]).SerializeToString()
    return raw
