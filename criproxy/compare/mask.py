"""An answer as JSON with what must differ between two runtimes masked.

IDs (64-hex, or any field named ``id``/``*_id``), timestamps, IPs, usage figures and process IDs
differ between any two runs, so they become placeholders; everything else is kept, and list items
are sorted so an order no client may rely on is no difference. List answers keep only the objects
this run made (its run label), since each endpoint may hold other workloads.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

RUN_LABEL = "criproxy-compare.run"

_HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32,64}(?![0-9a-f])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME_KEYS = {"created_at", "started_at", "finished_at", "timestamp", "last_seen"}
_VOLATILE_SUFFIXES = ("_bytes", "_nano_cores", "_nano_seconds", "_faults", "inodes_used", "_pid", "pid")
_ID_KEYS = {"id", "pod_sandbox_id", "container_id", "sandbox_id", "uid"}


def _mask_text(s: str) -> str:
    s = _UUID.sub("<uuid>", s)
    s = _HEX_ID.sub("<id>", s)
    s = _IPV4.sub("<ip>", s)
    return _IPV6.sub(_ipv6, s) if s.count(":") >= 2 else s


def _ipv6(m: re.Match[str]) -> str:
    try:
        ipaddress.IPv6Address(m.group(0))
    except ValueError:
        return m.group(0)
    return "<ip>"


def mask(doc: Any, key: str = "") -> Any:
    """``doc`` with IDs, times, IPs and usage figures as placeholders, lists sorted."""
    if isinstance(doc, dict):
        return {k: mask(v, k) for k, v in doc.items()}
    if isinstance(doc, list):
        items = [mask(v, key) for v in doc]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if key in _TIME_KEYS:
        return "<time>"
    if key in _ID_KEYS or key.endswith("_id"):
        return "<id>"
    if key.endswith(_VOLATILE_SUFFIXES) or (key == "value" and isinstance(doc, (int, str)) and str(doc).isdigit()):
        return "<n>"
    if isinstance(doc, str):
        return _mask_text(doc)
    return doc


def _ours(item: Any, run: str) -> bool:
    labels = item.get("labels") if isinstance(item, dict) else None
    return isinstance(labels, dict) and labels.get(RUN_LABEL) == run


def answer_document(msg: Message, run: str) -> Any:
    """The masked JSON of a CRI answer; list fields of labelled objects keep only this run's."""
    doc = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    for field in ("items", "containers", "stats"):
        items = doc.get(field)
        if isinstance(items, list) and items and any(isinstance(i, dict) and "labels" in i for i in items):
            doc[field] = [i for i in items if _ours(i, run)]
        elif isinstance(items, list) and field == "stats":
            doc[field] = [i for i in items if _ours(i.get("attributes", {}), run)]
    return mask(doc)
