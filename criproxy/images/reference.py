"""Image references normalised as kubelet and crictl expect (Docker's rules).

``busybox`` → ``docker.io/library/busybox:latest``; ``host:5000/a/b`` keeps its host;
``name:tag@sha256:…`` keeps both. A bare ``sha256:<64 hex>`` (or 64 hex) is an image ID, not a
reference. Anything else that does not parse is InvalidArgument, before any I/O happens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from criproxy import errors

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_ID = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def tagged(self) -> str:
        """``repo:tag`` ("" when pulled by digest only), the repo-tag name containerd records."""
        return f"{self.repository}:{self.tag}" if self.tag else ""


def image_id(text: str) -> str | None:
    """``sha256:<hex>`` when text is an image ID (with or without the prefix), else None."""
    m = _ID.match(text)
    return f"sha256:{m.group(1)}" if m else None


def parse(text: str) -> Reference:
    """Parse and normalise; InvalidArgument names what is wrong."""
    if not text or text != text.strip():
        raise errors.InvalidArgument(f"invalid image reference {text!r}: empty or surrounded by spaces")
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise errors.InvalidArgument(f"invalid image reference {text!r}: bad digest {digest!r}")
    tag = ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise errors.InvalidArgument(f"invalid image reference {text!r}: bad tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, remainder
        if not _DOMAIN.match(domain):
            raise errors.InvalidArgument(f"invalid image reference {text!r}: bad registry host {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not all(_COMPONENT.match(c) for c in path.split("/")):
        raise errors.InvalidArgument(f"invalid image reference {text!r}: repository name must be lowercase "
                                     "alphanumerics separated by '.', '_', '__' or '-'")
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)
