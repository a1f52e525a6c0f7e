"""Looking up images that are already in containerd: by reference, repo digest or image ID.

This is the read side the sandbox and container code use ("is the pause image here?", "which
snapshot chain does this container start from?"). Content is immutable, so parsed manifests and
configs are cached by digest for the life of the process.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from typing import Any

from criproxy.app import App
from criproxy.images.manifest import pick_platform
from criproxy.protos import content_pb

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_cache: dict[str, Any] = {}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI terms for the machine criproxy runs on."""
    m = platform.machine()
    return "linux", _ARCH.get(m, m)


@dataclass(frozen=True)
class LocalImage:
    """What CRI needs of an image that containerd holds."""

    id: str                     # config digest, "sha256:…"
    target_digest: str          # root descriptor (index or manifest) digest
    target_media_type: str
    manifest_digest: str        # the platform manifest used
    config: dict[str, Any]      # the OCI image config JSON
    chain_id: str               # top snapshot name (chain ID of all layers)
    size: int                   # compressed size of config + layers
    names: list[str] = field(default_factory=list)  # every containerd record naming this image

    @property
    def repo_tags(self) -> list[str]:
        return sorted(n for n in self.names if "@" not in n and not n.startswith("sha256:"))

    @property
    def repo_digests(self) -> list[str]:
        return sorted(n for n in self.names if "@" in n)

    @property
    def record_name(self) -> str:
        """The name a container's ``image`` field should carry: tag, then digest, then ID."""
        return (self.repo_tags or self.repo_digests or [self.id])[0]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI identity.ChainIDs: chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


async def read_blob(app: App, digest: str) -> bytes:
    """Read a whole (small) blob from the content store: manifests and configs."""
    chunks = []
    async for resp in app.ctrd.content.Read.iterate(content_pb.ReadContentRequest(digest=digest)):
        chunks.append(resp.data)
    return b"".join(chunks)


async def read_json(app: App, digest: str) -> Any:
    if digest not in _cache:
        _cache[digest] = json.loads(await read_blob(app, digest))
    return _cache[digest]


def pick_manifest(index: dict[str, Any]) -> dict[str, Any]:
    """The index entry for this host's platform, chosen as the puller chooses it (variants included)."""
    chosen = pick_platform(index)
    return next(dict(m) for m in index.get("manifests", []) if m.get("digest") == chosen.digest)


async def describe(app: App, target: Any, names: list[str]) -> LocalImage:
    """Walk index → manifest → config for a containerd image target descriptor."""
    manifest_digest = target.digest
    doc = await read_json(app, target.digest)
    if target.media_type in INDEX_TYPES or "manifests" in doc:
        manifest_digest = pick_manifest(doc)["digest"]
        doc = await read_json(app, manifest_digest)
    config_desc = doc["config"]
    config = await read_json(app, config_desc["digest"])
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    chain = chain_ids(diff_ids)
    size = int(config_desc.get("size", 0)) + sum(int(layer.get("size", 0)) for layer in doc.get("layers", []))
    return LocalImage(id=config_desc["digest"], target_digest=target.digest, target_media_type=target.media_type,
                      manifest_digest=manifest_digest, config=config, chain_id=chain[-1] if chain else "",
                      size=size, names=names)
