"""Manifest logic without I/O: parsing, platform choice, and the labels a containerd pull writes.

Kept pure so it is unit-tested directly: which manifest of an index this host runs, which children
a blob has (and the ``containerd.io/gc.ref.content.*`` labels that keep them), and the
``containerd.io/distribution.source.<host>`` label.
"""

from __future__ import annotations

import contextlib
import json
import platform as _platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from criproxy import errors
from criproxy.images.descriptor import Descriptor
from criproxy.labels import DISTRIBUTION_SOURCE, GC_REF_CONTENT

# The most criproxy reads into memory of a manifest or index and of an image config (from a registry
# or from containerd's content store); containerd's own limits are the same order.
MAX_MANIFEST = 4 * 1024 * 1024
MAX_CONFIG = 16 * 1024 * 1024
INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.list.v2+json"})
MANIFEST_TYPES = frozenset({"application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json"})
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                          "application/vnd.docker.container.image.v1+json"})
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "i686": "386", "i386": "386", "riscv64": "riscv64"}
_VARIANT = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""


def host_platform() -> Platform:
    """This machine in OCI terms (``linux/amd64``, ``linux/arm64/v8`` …)."""
    m = _platform.machine()
    return Platform("linux", _ARCH.get(m, m), _VARIANT.get(m, ""))


@contextlib.contextmanager
def _well_formed(what: str) -> Iterator[None]:
    """A registry document of the wrong shape (a string where an object belongs, a descriptor without
    a digest) is the registry's fault: FailedPrecondition naming it, not an unexpected exception."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise errors.FailedPrecondition(f"malformed {what} from the registry: {type(e).__name__}: {e}") from None


def load(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise errors.FailedPrecondition(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise errors.FailedPrecondition(f"{what} is not a JSON object")
    return doc


def _matches(plat: dict[str, Any], want: Platform) -> int:
    """0 = no match; higher is better (exact variant beats a missing one)."""
    if plat.get("os") != want.os or plat.get("architecture") != want.architecture:
        return 0
    variant = str(plat.get("variant", ""))
    if variant == want.variant:
        return 3
    if not variant or not want.variant:
        return 2
    return 0


def pick_platform(index: dict[str, Any], want: Platform | None = None) -> Descriptor:
    """The index entry for ``want`` (default: this host); NotFound naming what the index offers."""
    want = want or host_platform()
    with _well_formed("image index"):
        entries = [m for m in index.get("manifests", []) if isinstance(m, dict)]
        scored = [(_matches(dict(m.get("platform") or {}), want), i, m) for i, m in enumerate(entries)]
    best = max((s for s in scored if s[0] > 0), key=lambda s: (s[0], -s[1]), default=None)
    if best is not None:
        return Descriptor.from_json(best[2])
    unmarked = [m for m in entries if not m.get("platform")]
    if len(unmarked) == 1:
        return Descriptor.from_json(unmarked[0])
    offered = sorted({"/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                      for m in entries for p in [dict(m.get("platform") or {})]})
    raise errors.NotFound(f"no image for platform {want.os}/{want.architecture} in the index "
                          f"(it offers {', '.join(offered) or 'nothing'})")


@dataclass(frozen=True)
class ImageManifest:
    """A platform manifest: its config and its layers, in order."""

    config: Descriptor
    layers: tuple[Descriptor, ...]


def parse_manifest(doc: dict[str, Any], media_type: str) -> ImageManifest:
    if media_type not in MANIFEST_TYPES and "config" not in doc:
        raise errors.FailedPrecondition(f"unsupported manifest media type {media_type!r}")
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers", []), list):
        raise errors.FailedPrecondition("manifest lacks a config or has malformed layers")
    layers = tuple(Descriptor.from_json(layer) for layer in doc.get("layers", []))
    return ImageManifest(Descriptor.from_json(doc["config"]), layers)


def diff_ids(config: dict[str, Any], layer_count: int) -> list[str]:
    """The config's uncompressed layer digests; their count must equal the manifest's layers."""
    with _well_formed("image config"):
        rootfs = config.get("rootfs") or {}
        ids = list(rootfs.get("diff_ids") or [])
        kind = rootfs.get("type", "layers")
    if kind != "layers" or len(ids) != layer_count:
        raise errors.FailedPrecondition(f"image config has {len(ids)} diff_ids for {layer_count} layers")
    return [str(d) for d in ids]


def child_labels(doc: dict[str, Any], media_type: str) -> dict[str, str]:
    """``containerd.io/gc.ref.content.*`` labels naming every child, as containerd's pull writes them.

    index → ``m.<i>`` for each manifest (all platforms); manifest → ``config`` and ``l.<i>``.
    """
    prefix = GC_REF_CONTENT
    with _well_formed("index" if media_type in INDEX_TYPES or "manifests" in doc else "manifest"):
        if media_type in INDEX_TYPES or "manifests" in doc:
            return {f"{prefix}m.{i}": str(m["digest"]) for i, m in enumerate(doc.get("manifests", []))}
        out = {f"{prefix}config": str(doc["config"]["digest"])}
        out.update({f"{prefix}l.{i}": str(layer["digest"]) for i, layer in enumerate(doc.get("layers", []))})
        return out


def source_label(domain: str, path: str) -> tuple[str, str]:
    """``containerd.io/distribution.source.<host without port>`` = repository path."""
    return DISTRIBUTION_SOURCE + domain.split(":")[0], path


def write_kind(media_type: str) -> str:
    """The ingest ref prefix containerd uses for a media type (``layer-sha256:…``)."""
    if media_type in INDEX_TYPES:
        return "index"
    if media_type in MANIFEST_TYPES:
        return "manifest"
    if media_type in CONFIG_TYPES:
        return "config"
    if "layer" in media_type or "rootfs" in media_type:
        return "layer"
    return "unknown"
