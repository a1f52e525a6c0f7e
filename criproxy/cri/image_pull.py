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
from criproxy.images.pull import ensure_unpacked, pull_image
from criproxy.protos import cri
from criproxy.translate import checks
from criproxy.translate.sandbox import handler_config, handler_snapshotter


@rpc("PullImage")
async def pull(app: App, request: cri.PullImageRequest) -> cri.PullImageResponse:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("PullImage: image.image is empty")
    if request.HasField("auth"):          # these become HTTP headers: no CR/LF injection
        for name in ("username", "password", "auth", "identity_token", "registry_token", "server_address"):
            checks.plain(f"PullImage auth.{name}", getattr(request.auth, name), checks.CREDENTIAL_MAX, secret=True)
    snapshotter = _snapshotter(app, request)
    image = await pull_image(app, ref, request.auth if request.HasField("auth") else None)
    if snapshotter != app.config.snapshotter:      # a handler with its own snapshotter: unpack there too
        await ensure_unpacked(app, image, snapshotter)
    return cri.PullImageResponse(image_ref=image.id)


RUNTIME_HANDLER_ANNOTATION = "io.kubernetes.cri.runtime-handler"


def _snapshotter(app: App, request: cri.PullImageRequest) -> str:
    """The snapshotter of the runtime handler the pull is for: ``image.runtime_handler``, else the
    sandbox config's runtime-handler annotation (what containerd's CRI reads); an unknown handler
    is INVALID_ARGUMENT."""
    handler = request.image.runtime_handler or request.sandbox_config.annotations.get(RUNTIME_HANDLER_ANNOTATION, "")
    if not handler:
        return app.config.snapshotter
    handler_config(app.config, handler)
    return handler_snapshotter(app.config, handler)
