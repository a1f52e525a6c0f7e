"""The generated descriptors must match upstream's wire facts field for field.

The contracts under tests/contracts are copies of the facts the .proto files were written from
(package, message, field name, number, type, label, map entries, enums, services). A mismatch
means a kubelet or containerd would mis-decode what criproxy sends, so every file in protos/ is
checked against them.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
# Upstream files criproxy does not speak: fieldpath (a Go code-generation option, not a wire type).
NOT_USED = {"types/fieldpath.proto"}
TYPE_NAMES = {v: k[len("TYPE_"):].lower() for k, v in vars(FieldDescriptor).items()
              if k.startswith("TYPE_") and isinstance(v, int)}
LABELS = {FieldDescriptor.LABEL_OPTIONAL: "optional", FieldDescriptor.LABEL_REPEATED: "repeated"}


def _load_generated() -> None:
    root = Path(__file__).resolve().parent.parent.parent / "criproxy" / "_gen"
    for path in root.rglob("*_pb2.py"):
        mod = ".".join(path.relative_to(root.parent.parent).with_suffix("").parts)
        importlib.import_module(mod)


def _cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for group in ("cri", "containerd", "cgroups", "nri"):
        files = json.loads((CONTRACTS / f"{group}-wire-contract.json").read_text())["files"]
        cases += [(group, name, spec) for name, spec in files.items() if name not in NOT_USED]
    return cases


def _field_facts(field: FieldDescriptor) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": field.name, "number": field.number, "type": TYPE_NAMES[field.type]}
    if field.message_type is not None:
        facts["type_name"] = "." + field.message_type.full_name
    elif field.enum_type is not None:
        facts["type_name"] = "." + field.enum_type.full_name
    return facts


def _check_message(desc: Descriptor, spec: dict[str, Any]) -> None:
    got = {f.number: f for f in desc.fields}
    assert sorted(got) == sorted(f["number"] for f in spec["fields"]), desc.full_name
    for want in spec["fields"]:
        field = got[want["number"]]
        facts = _field_facts(field)
        facts["label"] = "repeated" if field.is_repeated else "optional"
        expected = {k: want[k] for k in ("name", "number", "type", "label", "type_name") if k in want}
        assert facts == expected, f"{desc.full_name}.{field.name}"
        if want.get("proto3_optional"):
            assert field.has_presence, f"{desc.full_name}.{field.name} must be optional"
    for entry, kv in spec.get("map_entries", {}).items():
        nested = desc.nested_types_by_name[entry]
        assert nested.GetOptions().map_entry, f"{desc.full_name}.{entry}"
        assert [_field_facts(f) for f in nested.fields] == sorted(kv, key=lambda f: f["number"])


@pytest.fixture(scope="module")
def pool() -> descriptor_pool.DescriptorPool:
    _load_generated()
    return descriptor_pool.Default()


@pytest.mark.parametrize(("group", "name", "spec"), _cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_file_matches_contract(pool: descriptor_pool.DescriptorPool, group: str, name: str,
                               spec: dict[str, Any]) -> None:
    pkg = spec["package"]
    for msg_name, msg_spec in spec["messages"].items():
        _check_message(pool.FindMessageTypeByName(f"{pkg}.{msg_name}"), msg_spec)
    for enum_name, values in spec["enums"].items():
        enum = pool.FindEnumTypeByName(f"{pkg}.{enum_name}")
        assert {v.name: v.number for v in enum.values} == values, enum.full_name
    for svc_name, methods in spec["services"].items():
        svc = pool.FindServiceByName(f"{pkg}.{svc_name}")
        assert sorted(m.name for m in svc.methods) == sorted(methods), svc.full_name
        for m in svc.methods:
            want = methods[m.name]
            assert "." + m.input_type.full_name == want["input"], m.full_name
            assert "." + m.output_type.full_name == want["output"], m.full_name
            assert m.client_streaming == want["client_streaming"], m.full_name
            assert m.server_streaming == want["server_streaming"], m.full_name
