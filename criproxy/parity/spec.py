"""Fetch what a runtime stored in containerd for one container: its OCI spec and its record.

The spec is a ``google.protobuf.Any`` whose value is the JSON of the OCI runtime spec (type URL
``types.containerd.io/opencontainers/runtime-spec/1/Spec``); both runtimes write it that way.
The record part keeps the fields that carry behaviour or identity (labels, image, runtime and its
options, snapshotter, extension names) so label and option differences show up too.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import any_pb2, json_format

from criproxy import errors
from criproxy import protos as p
from criproxy.containerd.client import Containerd

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec is a few KiB (seccomp makes it ~30 KiB); refuse absurd ones
FETCH_TIMEOUT = 10.0


def decode_spec(spec: any_pb2.Any) -> dict[str, Any]:
    """The OCI spec held in ``spec`` as a JSON object (empty when there is none)."""
    if not spec.value:
        return {}
    if len(spec.value) > MAX_SPEC_BYTES:
        raise errors.InvalidArgument(f"spec of {len(spec.value)} bytes is larger than {MAX_SPEC_BYTES}")
    try:
        doc = json.loads(spec.value)
    except ValueError as e:
        raise errors.InvalidArgument(f"spec ({spec.type_url}) is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise errors.InvalidArgument(f"spec ({spec.type_url}) is not a JSON object")
    return doc


def _runtime_options(options: any_pb2.Any) -> Any:
    """runc options decoded when they are runc's; otherwise only the type (nothing else is known)."""
    if not options.type_url:
        return None
    if options.type_url.endswith("containerd.runc.v1.Options"):
        msg = p.runc_options.Options()
        msg.ParseFromString(options.value)
        return {"type": options.type_url, **json_format.MessageToDict(msg, preserving_proto_field_name=True)}
    return {"type": options.type_url}


def record_document(c: p.containers_pb.Container) -> dict[str, Any]:
    """The behaviour-carrying parts of a containerd container record, as JSON."""
    return {
        "labels": dict(c.labels),
        "image": c.image,
        "runtime": {"name": c.runtime.name, "options": _runtime_options(c.runtime.options)},
        "snapshotter": c.snapshotter,
        "snapshot_key": c.snapshot_key,
        "extensions": sorted(c.extensions),
        "sandbox": c.sandbox,
    }


async def fetch_container(ctrd: Containerd, container_id: str,
                          timeout: float = FETCH_TIMEOUT) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(spec, record)`` of ``container_id`` in ``ctrd``'s namespace (Containers.Get)."""
    resp = await ctrd.containers.Get(p.containers_pb.GetContainerRequest(id=container_id), timeout=timeout)
    return decode_spec(resp.container.spec), record_document(resp.container)
