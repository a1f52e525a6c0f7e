"""PullImage: criproxy's own registry client lands the image in containerd (see images/pull.py).

The answer is the image ID (config digest), which is what the built-in CRI returns and what the
kubelet passes back as ``image_ref``. Errors keep the class the registry gave (NotFound,
Unauthenticated, PermissionDenied, Unavailable, DeadlineExceeded) so the kubelet's message is
actionable.
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.images.pull import pull_image
from criproxy.protos import cri


@rpc("PullImage")
async def pull(app: App, request: cri.PullImageRequest) -> cri.PullImageResponse:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("PullImage: image.image is empty")
    image = await pull_image(app, ref, request.auth if request.HasField("auth") else None)
    return cri.PullImageResponse(image_ref=image.id)
