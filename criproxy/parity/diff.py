"""Compare two JSON documents and name every difference by a JSON path.

Paths read like the document: ``process.capabilities.bounding[CAP_NET_RAW]``, ``mounts[/etc/hosts].options``,
``linux.sysctl[net.ipv4.ip_forward]``. Lists whose order carries no behaviour are compared by a key
(mounts by destination, namespaces by type, rlimits by type, devices by path, env by name) or as
sets (capabilities, masked/readonly paths, mount options, groups), so a reordering is no difference
and an element one side lacks is named by itself. An absent field equals null, false, "" and an empty
list or object (the spec's Go types cannot tell them apart); it does not equal 0.

The seccomp syscall list (hundreds of rules) is folded into one rule per syscall name and, when the
sides differ, reported as one difference whose values are a digest, a count and the rules only that
side has (``seccomp_digest`` digests a whole profile for the report).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final


class _Absent:
    """A field one side does not have (distinct from JSON null)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class Difference:
    """One difference: where, and what each side has (``ABSENT`` when it has nothing there)."""

    path: str
    left: Any
    right: Any

    def render(self, left_name: str = "criproxy", right_name: str = "builtin", width: int = 240) -> str:
        return f"{self.path}: {left_name}={_show(self.left, width)} {right_name}={_show(self.right, width)}"


def _show(v: Any, width: int) -> str:
    s = repr(v) if v is ABSENT else json.dumps(v, sort_keys=True, separators=(",", ":"))
    return s if len(s) <= width else s[:width - 12] + f"…(+{len(s) - width + 12})"


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key_path(base: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{key}]"


def _env_map(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = str(item).partition("=")
        out[_unique(out, name)] = value
    return out


def _unique(seen: dict[str, Any], key: str) -> str:
    if key not in seen:
        return key
    n = 2
    while f"{key}#{n}" in seen:
        n += 1
    return f"{key}#{n}"


def _keyed(field: str) -> Callable[[list[Any]], dict[str, Any] | None]:
    def to_map(items: list[Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get(field), str | int):
                return None  # not the expected shape: compare by index
            out[_unique(out, str(item[field]))] = item
        return out
    return to_map


def _as_set(items: list[Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        key = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
        out[_unique(out, str(key))] = item
    return out


def _seccomp_rule(rule: dict[str, Any]) -> str:
    extra = {k: v for k, v in rule.items() if k not in ("names", "action") and not _empty(v)}
    if isinstance(extra.get("args"), list):  # valueTwo 0 is the field left out (omitempty)
        extra["args"] = [{k: v for k, v in a.items() if not (k == "valueTwo" and v == 0)} if isinstance(a, dict)
                         else a for a in extra["args"]]
    text = str(rule.get("action", ""))
    if extra:
        text += " " + json.dumps(extra, sort_keys=True, separators=(",", ":"))
    return text


def _seccomp_map(items: list[Any]) -> dict[str, Any] | None:
    """syscall name -> its rules (action plus args/errno), so a list of ~400 names diffs by name."""
    out: dict[str, list[str]] = {}
    for rule in items:
        if not isinstance(rule, dict):
            return None
        for name in rule.get("names") or []:
            out.setdefault(str(name), []).append(_seccomp_rule(rule))
    return {name: sorted(rules) if len(rules) > 1 else rules[0] for name, rules in out.items()}


# How lists are compared, by their shape path (every [..] written as []); others go by index.
LIST_RULES: dict[str, Callable[[list[Any]], dict[str, Any] | None]] = {
    "mounts": _keyed("destination"),
    "mounts[].options": _as_set,
    "linux.namespaces": _keyed("type"),
    "linux.devices": _keyed("path"),
    "linux.resources.hugepageLimits": _keyed("pageSize"),
    "linux.maskedPaths": _as_set,
    "linux.readonlyPaths": _as_set,
    "linux.seccomp.architectures": _as_set,
    "linux.seccomp.flags": _as_set,
    "process.rlimits": _keyed("type"),
    "process.env": _env_map,
    "process.user.additionalGids": _as_set,
    "process.capabilities.bounding": _as_set,
    "process.capabilities.effective": _as_set,
    "process.capabilities.inheritable": _as_set,
    "process.capabilities.permitted": _as_set,
    "process.capabilities.ambient": _as_set,
    "extensions": _as_set,
}

# Lists too long to diff item by item: one difference naming a digest and the items only one side has.
SUMMARISED: dict[str, Callable[[list[Any]], dict[str, Any] | None]] = {
    "linux.seccomp.syscalls": _seccomp_map,
}
SUMMARY_ITEMS = 40  # items named in a summary; the count says how many more

_BRACKETS = re.compile(r"\[[^\]]*\]")


def shape(path: str) -> str:
    """``mounts[/dev].options`` -> ``mounts[].options``: the key rules are looked up by."""
    return _BRACKETS.sub("[]", path)


Rules = dict[str, Callable[[list[Any]], dict[str, Any] | None]]


def diff(left: Any, right: Any, root: str = "", rules: Rules | None = None) -> list[Difference]:
    """Every difference between ``left`` and ``right``, paths prefixed by ``root`` (``spec.``…).

    ``rules`` (default ``LIST_RULES``) are looked up by the shape of the path below ``root``.
    """
    out: list[Difference] = []
    _walk(left, right, "", out, LIST_RULES if rules is None else rules)
    if root:
        return [Difference(_join(root, d.path), d.left, d.right) for d in out]
    return out


def _join(root: str, path: str) -> str:
    if not path:
        return root
    return root + path if path.startswith("[") else f"{root}.{path}"


def _summary(mine: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    only = [f"{k} {json.dumps(v, sort_keys=True)}" if not isinstance(v, str) else f"{k} {v}"
            for k, v in sorted(mine.items()) if other.get(k, ABSENT) != v]
    blob = json.dumps(mine, sort_keys=True, separators=(",", ":")).encode()
    return {"digest": hashlib.sha256(blob).hexdigest()[:12], "count": len(mine), "differing": len(only),
            "items": only[:SUMMARY_ITEMS]}


def _walk(a: Any, b: Any, path: str, out: list[Difference], rules: Rules) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in _ordered_keys(a, b):
            _walk(a.get(key, ABSENT), b.get(key, ABSENT), _key_path(path, str(key)), out, rules)
        return
    if isinstance(a, list) and isinstance(b, list):
        summarise = SUMMARISED.get(shape(path))
        if summarise is not None:
            sa, sb = summarise(a), summarise(b)
            if sa is not None and sb is not None:
                if sa != sb:
                    out.append(Difference(path, _summary(sa, sb), _summary(sb, sa)))
                return
        rule = rules.get(shape(path))
        if rule is not None:
            ma, mb = rule(a), rule(b)
            if ma is not None and mb is not None:
                for key in _ordered_keys(ma, mb):
                    _walk(ma.get(key, ABSENT), mb.get(key, ABSENT), f"{path}[{key}]", out, rules)
                return
        for i in range(max(len(a), len(b))):
            _walk(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT, f"{path}[{i}]", out, rules)
        return
    if _empty(a) and _empty(b):
        return
    if type(a) is not type(b) or a != b:
        out.append(Difference(path, a, b))


def _empty(v: Any) -> bool:
    """Absent, null, false, "" and empty lists/objects mean the same in an OCI spec (Go's omitempty
    and nil slices); 0 does not (``oomScoreAdj: 0`` sets the score, no field inherits it)."""
    return v is ABSENT or v is None or v is False or v == "" or v == [] or v == {}


def _ordered_keys(a: dict[str, Any], b: dict[str, Any]) -> Iterable[str]:
    """Left's keys in its order, then right-only keys in theirs: a stable, readable report."""
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(k for k in b if k not in seen))
    return seen.keys()


def seccomp_digest(spec: dict[str, Any]) -> str:
    """A short stable digest of the seccomp profile (order of rules and names ignored), or 'none'."""
    seccomp = (spec.get("linux") or {}).get("seccomp")
    if not isinstance(seccomp, dict):
        return "none"
    canon = dict(seccomp)
    rules = _seccomp_map(list(seccomp.get("syscalls") or []))
    canon["syscalls"] = rules if rules is not None else seccomp.get("syscalls")
    for key in ("architectures", "flags"):
        if isinstance(canon.get(key), list):
            canon[key] = sorted(map(str, canon[key]))
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
    return f"{hashlib.sha256(blob).hexdigest()[:12]} ({len(rules or {})} syscalls)"
