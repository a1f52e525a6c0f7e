"""Looking up images that are already in containerd: by reference, repo digest or image ID.

This is the read side the sandbox and container code use ("is the pause image here?", "which
snapshot chain does this container start from?"). Content is immutable, so parsed manifests and
configs are cached by digest in a bounded LRU (count and bytes, ``App.images.documents``).

A blob is read into memory only when it is small: its descriptor's size is checked against the
limit before the read, and the read itself asks containerd for at most limit + 1 bytes (containerd
clamps a read to the blob's own size), so a manifest naming a huge layer as its config cannot make
criproxy load that layer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.images.manifest import MAX_CONFIG, MAX_MANIFEST, pick_platform
from criproxy.protos import content_pb
from criproxy.state.image import LocalImage as LocalImage  # re-exported: images.local.LocalImage still names it

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
JSON_IN_THREAD = 256 * 1024     # bigger documents are parsed off the event loop


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI terms for the machine criproxy runs on."""
    m = platform.machine()
    return "linux", _ARCH.get(m, m)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI identity.ChainIDs: chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def check_size(what: str, digest: str, size: Any, limit: int) -> None:
    """Refuse a descriptor whose declared size is over ``limit`` before anything is read."""
    try:
        n = int(size or 0)
    except (TypeError, ValueError):
        raise errors.InvalidArgument(f"{what} {digest}: size {size!r} is not a number") from None
    if n > limit:
        raise errors.ResourceExhausted(f"{what} {digest} is {n} bytes, over the {limit} byte limit "
                                       f"for a blob read into memory")


async def read_blob(app: App, digest: str, limit: int = MAX_MANIFEST) -> bytes:
    """Read a whole small blob (manifest, config) from the content store; ResourceExhausted when it
    is longer than ``limit`` (only limit + 1 bytes are ever asked for)."""
    chunks, total = [], 0
    async for resp in app.ctrd.content.Read.iterate(content_pb.ReadContentRequest(digest=digest, size=limit + 1)):
        chunks.append(resp.data)
        total += len(resp.data)
        if total > limit:
            raise errors.ResourceExhausted(f"blob {digest} is over the {limit} byte limit for a blob read "
                                           f"into memory")
    return b"".join(chunks)


async def read_json(app: App, digest: str, limit: int = MAX_MANIFEST) -> Any:
    """A manifest, index or config by digest, parsed, from the bounded cache when it is there."""
    hit = app.images.documents.get(digest)
    if hit is None:
        raw = await read_blob(app, digest, limit)
        hit = json.loads(raw) if len(raw) <= JSON_IN_THREAD else await asyncio.to_thread(json.loads, raw)
        app.images.documents.put(digest, hit, len(raw))
    return hit


def pick_manifest(index: dict[str, Any]) -> dict[str, Any]:
    """The index entry for this host's platform, chosen as the puller chooses it (variants included)."""
    chosen = pick_platform(index)
    return next(dict(m) for m in index.get("manifests", []) if m.get("digest") == chosen.digest)


async def describe(app: App, target: Any, names: list[str]) -> LocalImage:
    """Walk index → manifest → config for a containerd image target descriptor."""
    manifest_digest = target.digest
    check_size("manifest", target.digest, target.size, MAX_MANIFEST)
    doc = await read_json(app, target.digest)
    if target.media_type in INDEX_TYPES or "manifests" in doc:
        entry = pick_manifest(doc)
        manifest_digest = entry["digest"]
        check_size("manifest", manifest_digest, entry.get("size"), MAX_MANIFEST)
        doc = await read_json(app, manifest_digest)
    config_desc = doc["config"]
    check_size("config", config_desc["digest"], config_desc.get("size"), MAX_CONFIG)
    config = await read_json(app, config_desc["digest"], MAX_CONFIG)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    chain = chain_ids(diff_ids)
    size = int(config_desc.get("size", 0)) + sum(int(layer.get("size", 0)) for layer in doc.get("layers", []))
    return LocalImage(id=config_desc["digest"], target_digest=target.digest, target_media_type=target.media_type,
                      manifest_digest=manifest_digest, config=config, chain_id=chain[-1] if chain else "",
                      size=size, names=names)
