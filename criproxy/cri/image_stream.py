"""StreamImages: ListImages as a server stream, in batches, for nodes whose image list would not
fit one 16 MiB message."""

from __future__ import annotations

from collections.abc import AsyncIterator

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.cri.image_list import list_cri_images
from criproxy.protos import cri

BATCH = 200


@rpc("StreamImages")
async def stream_images(app: App, request: cri.StreamImagesRequest) -> AsyncIterator[cri.StreamImagesResponse]:
    flt = request.filter if request.HasField("filter") else None
    images = await list_cri_images(app, flt)
    for i in range(0, len(images), BATCH):
        yield cri.StreamImagesResponse(images=images[i:i + BATCH])
