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
NAME_MAX = 255                      # distribution's limit on the whole name (domain and path)
TEXT_MAX = 1024                     # name + tag (128) + the longest digest fit well within this
# The distribution grammar (reference/regexp.go), ASCII only and always matched in full.
_ALNUM = r"[a-z0-9]+"
_COMPONENT = re.compile(rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*", re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII)
# go-digest's registered algorithms: lowercase hex of the algorithm's size; others are refused.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_NAME}|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?", re.ASCII)
_ID = re.compile(r"(?:sha256:)?([a-f0-9]{64})", re.ASCII)


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
    m = _ID.fullmatch(text)
    return f"sha256:{m.group(1)}" if m else None


def _bad(text: str, why: str) -> errors.InvalidArgument:
    shown = text if len(text) <= 300 else text[:300] + "…"
    return errors.InvalidArgument(f"invalid image reference {shown!r}: {why}")


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise _bad(text, f"bad digest {digest!r}")
    algorithm, _, hexpart = digest.partition(":")
    size = _DIGEST_HEX.get(algorithm)
    if size is None:
        raise _bad(text, f"unsupported digest algorithm {algorithm!r}")
    if len(hexpart) != size or hexpart != hexpart.lower():
        raise _bad(text, f"a {algorithm} digest is {size} lowercase hex characters")


def parse(text: str) -> Reference:
    """Parse and normalise; InvalidArgument names what is wrong. The whole text must match the
    distribution grammar (ASCII; no surrounding space, no trailing newline)."""
    if not text or not text.isascii() or not text.isprintable() or text != text.strip():
        raise _bad(text, "empty, not printable ASCII, or surrounded by spaces")
    if len(text) > TEXT_MAX:
        raise _bad(text, f"longer than {TEXT_MAX} characters")
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(text, digest)
    tag = ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise _bad(text, f"bad tag {tag!r}")
    if len(rest) > NAME_MAX:
        raise _bad(text, f"repository name longer than {NAME_MAX} characters")
    if _ID.fullmatch(rest) and not rest.startswith("sha256:"):
        raise _bad(text, "a repository name cannot be 64 hexadecimal characters (that is an image ID)")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise _bad(text, f"bad registry host {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not all(_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise _bad(text, "repository name must be lowercase alphanumerics separated by '.', '_', '__' or '-'")
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)
