"""Pulling: the one entry point the CRI handlers and the sandbox code use.

``ensure_image`` is what RunPodSandbox calls for the pause image: local if containerd already has
it, otherwise pulled (with no credentials), so the answer is always a ``LocalImage``.
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.images.local import LocalImage, resolve_local


async def pull_image(app: App, ref: str, auth: object | None = None) -> LocalImage:
    """Pull ``ref`` into containerd and return it (filled in by the registry client)."""
    raise errors.Unimplemented(f"pulling {ref!r} is not implemented yet")


async def ensure_image(app: App, ref: str) -> LocalImage:
    """The image named by ``ref``, pulled first when containerd does not have it."""
    try:
        return await resolve_local(app, ref)
    except errors.NotFound:
        return await pull_image(app, ref)
