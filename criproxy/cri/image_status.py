"""ImageStatus: one image by tag, digest reference or image ID; an empty answer when absent.

Answered from the image cache (``images/catalog.py``) with no containerd call; the serialized answer
is kept per image until the cache changes.

The kubelet asks before every pull ("is it here?"), so absence is a normal answer, not NotFound.
``verbose`` adds ``info["info"]``: JSON with the image config, the platform manifest, the chain ID
and whether its snapshot chain is unpacked, for people debugging with ``crictl inspecti``.
"""

from __future__ import annotations

import json

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.images import catalog, unpack
from criproxy.images.local import read_json
from criproxy.protos import cri


async def _verbose(app: App, entry: catalog.CatalogEntry) -> dict[str, str]:
    img = entry.image
    doc = {
        "chainID": img.chain_id,
        "target": {"digest": img.target_digest, "mediaType": img.target_media_type},
        "manifest": await read_json(app, img.manifest_digest),
        "imageSpec": img.config,
        "unpacked": bool(img.chain_id) and await unpack.is_unpacked(app, app.config.snapshotter, img.chain_id),
        "snapshotter": app.config.snapshotter,
        "labels": entry.labels,
    }
    return {"info": json.dumps(doc, sort_keys=True)}


EMPTY = b""                                # ImageStatusResponse() serialized


@rpc("ImageStatus")
async def image_status(app: App, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse | bytes:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("ImageStatus: image.image is empty")
    entry = await catalog.find(app, ref)
    if entry is None:
        return EMPTY
    if not request.verbose:
        answers = app.images.catalog.status_answers
        raw = answers.get(entry.image.id)
        if raw is None:
            raw = cri.ImageStatusResponse(image=catalog.to_cri(app, entry)).SerializeToString()
            answers[entry.image.id] = raw
        return raw                        # the edge sends pre-serialized answers as they are
    resp = cri.ImageStatusResponse(image=catalog.to_cri(app, entry))
    resp.info.update(await _verbose(app, entry))
    return resp
