"""Checks of untrusted request fields that several RPC modules share: each refuses with
InvalidArgument before anything is made, instead of letting containerd, runc or a CNI plugin fail
half way with an error that would reach the caller as UNKNOWN."""

from __future__ import annotations

import re
from collections.abc import Mapping

from criproxy import errors

LABEL_MAX = 4096                    # containerd: len(key) + len(value) in bytes, per label
NAME_MAX = 253                      # a Kubernetes object name (DNS subdomain)
HOSTNAME_MAX = 64                   # the kernel's HOST_NAME_MAX
CREDENTIAL_MAX = 64 << 10           # registry tokens are JWTs of a few KiB
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:100] + "…")


def labels(what: str, items: Mapping[str, str]) -> None:
    """Labels containerd will store: a key, and at most 4096 bytes of key and value together."""
    for k, v in items.items():
        if not k:
            raise errors.InvalidArgument(f"{what} has a label with an empty key")
        if len(k.encode()) + len(v.encode()) > LABEL_MAX:
            raise errors.InvalidArgument(f"{what} label {_shown(k)}: key and value exceed {LABEL_MAX} bytes")


def plain(what: str, value: str, max_len: int, forbidden: str = "", secret: bool = False) -> None:
    """A name that ends up in a path, an environment variable, an HTTP header or a syscall: no
    control characters (NUL, CR, LF included), none of ``forbidden``, at most ``max_len``
    characters. A ``secret`` is never repeated in the message."""
    if len(value) > max_len:
        raise errors.InvalidArgument(f"{what} is longer than {max_len} characters")
    if _CONTROL.search(value) or any(c in value for c in forbidden):
        raise errors.InvalidArgument(f"{what} {'' if secret else _shown(value) + ' '}contains a control character"
                                     + (f" or one of {forbidden!r}" if forbidden else ""))
