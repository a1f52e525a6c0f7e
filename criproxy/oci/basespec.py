"""A runtime handler's base OCI spec (containerd's ``base_runtime_spec``): a JSON file an operator
writes (often ``ctr oci spec`` output edited: rlimits, extra mounts, env) that a pod's containers
start from instead of criproxy's default spec; the CRI's own decisions are applied on top as usual.

Read once at start, per handler: a missing, oversized or malformed file stops criproxy with one
line naming it (containerd's CRI refuses to start as well), rather than every CreateContainer of
that handler failing later. Keys the file leaves out come from the default spec, so a partial file
(just ``process.rlimits``, say) still yields a spec runc accepts. The pause container keeps the
default spec, as in containerd.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from criproxy.errors import StartupError
from criproxy.hostfile import HostFileError, read_regular
from criproxy.oci.spec import Spec, default_spec

MAX_BASE_SPEC = 1 << 20        # bytes; a spec is a few KiB


def load(path: str) -> Spec:
    """The file's JSON object, or StartupError naming the file and what is wrong."""
    try:
        data = read_regular(path, MAX_BASE_SPEC)
    except HostFileError as e:
        raise StartupError(f"base runtime spec {path}: {e}") from None
    except OSError as e:
        raise StartupError(f"base runtime spec {path}: {e.strerror}") from None
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise StartupError(f"base runtime spec {path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k, {}), dict) for k in ("process", "linux", "root")) \
            or not isinstance(doc.get("mounts", []), list):
        raise StartupError(f"base runtime spec {path}: not an OCI runtime spec (process, linux, root must be "
                           "objects and mounts a list)")
    return doc


def start_spec(base: Spec | None) -> Spec:
    """A fresh spec to build a container's on: the base's keys over the default's (one level into
    ``process`` and ``linux`` so a partial base keeps the defaults it does not mention)."""
    spec = default_spec()
    if base is None:
        return spec
    base = copy.deepcopy(base)
    for key, value in base.items():
        if key in ("process", "linux") and isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    lin: dict[str, Any] = spec["linux"]
    lin.setdefault("resources", {}).setdefault("devices", [{"allow": False, "access": "rwm"}])
    lin.setdefault("namespaces", [])
    spec["process"].setdefault("env", [])
    spec["process"].setdefault("user", {"uid": 0, "gid": 0})
    return spec
