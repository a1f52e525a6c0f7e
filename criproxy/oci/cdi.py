"""CDI (Container Device Interface) devices: ``ContainerConfig.CDI_devices`` and ``cdi.k8s.io/*``
annotations resolved against the spec files a device vendor drops in the CDI directories.

A CDI spec file (JSON or YAML) names a kind (``vendor.com/class``) and devices of that kind, each with
"container edits": device nodes, mounts, env, hooks and extra groups; the spec may carry edits of its
own that come with any of its devices. A request names devices fully (``vendor.com/class=name``).
Resolution follows the CDI reference library that containerd's CRI uses: files are read from each
directory in order (``/etc/cdi``, then ``/var/run/cdi``: a later directory overrides an earlier one's
device of the same name; two files of one directory defining it are a conflict), the spec-level
edits of every spec involved come first, then each device's in request order. An unknown device is
INVALID_ARGUMENT naming it, with the problems of any spec file that could not be read, since a
broken file is the usual reason a device is missing.

Runs in the spec-building thread: the files are small but their number and content are the host's.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.hostfile import HostFileError, read_regular
from criproxy.oci.spec import Option, Spec, merge_env

ANNOTATION_PREFIX = "cdi.k8s.io/"
# Spec versions of the CDI specification that are in use (0.3.0 is the oldest a library still reads).
VERSIONS = {"0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"}
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
MAX_SPEC_FILES = 512             # files read per directory
MAX_SPEC_BYTES = 1 << 20         # bytes per spec file; real ones are a few KiB
SUFFIXES = (".json", ".yaml", ".yml")

_VENDOR = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?"
_CLASS = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_DEVICE = r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?"
KIND_RE = re.compile(rf"^{_VENDOR}/{_CLASS}$")
NAME_RE = re.compile(rf"^{_DEVICE}$")
QUALIFIED_RE = re.compile(rf"^({_VENDOR}/{_CLASS})=({_DEVICE})$")


class SpecError(Exception):
    """A spec file that cannot be used (the message names the file)."""


@dataclass
class Device:
    kind: str
    name: str
    edits: dict[str, Any]
    spec_edits: dict[str, Any]
    source: str                      # the file it came from

    @property
    def qualified(self) -> str:
        return f"{self.kind}={self.name}"


@dataclass
class Registry:
    devices: dict[str, Device] = field(default_factory=dict)   # by qualified name
    problems: list[str] = field(default_factory=list)          # spec files that could not be used


# ---- the request ------------------------------------------------------------------------------------

def requested(cdi_devices: Iterable[str], annotations: Mapping[str, str]) -> list[str]:
    """The device names a container asks for, the CRI field first, each once; annotation keys
    sorted (a map has no order), values comma-separated. A malformed name is INVALID_ARGUMENT."""
    names = list(cdi_devices)
    for key in sorted(annotations):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        if not NAME_RE.match(key[len(ANNOTATION_PREFIX):]) or len(key) - len(ANNOTATION_PREFIX) > 63:
            raise errors.InvalidArgument(f"invalid CDI annotation key {key[:200]!r}")
        names += [v.strip() for v in annotations[key].split(",") if v.strip()]
    for n in names:
        if not QUALIFIED_RE.match(n):
            raise errors.InvalidArgument(f"invalid CDI device name {n[:200]!r}: want vendor.com/class=name")
    return list(dict.fromkeys(names))


# ---- spec files -----------------------------------------------------------------------------------

def _read(path: Path) -> bytes:
    """A regular file of bounded size (a FIFO or device named like a spec is refused, not read)."""
    try:
        return read_regular(path, MAX_SPEC_BYTES)
    except HostFileError as e:
        raise SpecError(f"{path}: {e}") from None


def parse(data: bytes, path: str) -> dict[str, Any]:
    """A spec file's content: JSON (``.json``) or YAML (anything else; YAML is a superset of JSON)."""
    try:
        if path.endswith(".json"):
            doc = json.loads(data)
        else:
            import yaml

            doc = yaml.safe_load(data)
    except Exception as e:       # json and yaml raise many kinds; each means "not a spec"
        raise SpecError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: not a CDI spec (not an object)")
    return doc


def _check_edits(edits: Any, where: str) -> dict[str, Any]:
    if edits is None:
        return {}
    if not isinstance(edits, dict):
        raise SpecError(f"{where}: containerEdits is not an object")
    for key, kind in (("env", list), ("deviceNodes", list), ("mounts", list), ("hooks", list),
                      ("additionalGids", list)):
        if edits.get(key) is not None and not isinstance(edits[key], kind):
            raise SpecError(f"{where}: containerEdits.{key} is not a list")
    for e in edits.get("env") or []:
        if not isinstance(e, str) or "=" not in e:
            raise SpecError(f"{where}: env entry {str(e)[:100]!r} is not KEY=value")
    for d in edits.get("deviceNodes") or []:
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"].startswith("/"):
            raise SpecError(f"{where}: a device node needs an absolute path")
        if d.get("type") not in (None, "", "c", "b", "u", "p"):
            raise SpecError(f"{where}: device node {d['path']} has invalid type {d.get('type')!r}")
        if any(d.get(k) is not None and not isinstance(d[k], int) for k in ("major", "minor", "fileMode",
                                                                             "uid", "gid")):
            raise SpecError(f"{where}: device node {d['path']} has a non-numeric field")
        perms = d.get("permissions") or ""
        if not isinstance(perms, str) or set(perms) - set("rwm"):
            raise SpecError(f"{where}: device node {d['path']} has invalid permissions {perms!r}")
    for m in edits.get("mounts") or []:
        if not isinstance(m, dict) or not isinstance(m.get("hostPath"), str) or \
                not isinstance(m.get("containerPath"), str) or not m["containerPath"].startswith("/"):
            raise SpecError(f"{where}: a mount needs hostPath and an absolute containerPath")
        if m.get("options") is not None and not all(isinstance(o, str) for o in m["options"]):
            raise SpecError(f"{where}: mount {m['containerPath']} options are not strings")
    for h in edits.get("hooks") or []:
        if not isinstance(h, dict) or h.get("hookName") not in HOOK_NAMES:
            raise SpecError(f"{where}: a hook's hookName must be one of {', '.join(HOOK_NAMES)}")
        if not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
            raise SpecError(f"{where}: a {h['hookName']} hook needs an absolute path")
    if not all(isinstance(g, int) and g >= 0 for g in edits.get("additionalGids") or []):
        raise SpecError(f"{where}: additionalGids must be non-negative numbers")
    if edits.get("intelRdt"):
        raise SpecError(f"{where}: intelRdt edits are not supported by criproxy")
    return edits


def devices_of(doc: dict[str, Any], path: str) -> list[Device]:
    """The devices one spec file defines, checked."""
    version = doc.get("cdiVersion")
    if version not in VERSIONS:
        raise SpecError(f"{path}: unsupported cdiVersion {version!r} (known: {', '.join(sorted(VERSIONS))})")
    kind = doc.get("kind")
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise SpecError(f"{path}: invalid kind {kind!r} (want vendor.com/class)")
    spec_edits = _check_edits(doc.get("containerEdits"), path)
    devs = doc.get("devices")
    if not isinstance(devs, list) or not devs:
        raise SpecError(f"{path}: no devices")
    out: dict[str, Device] = {}
    for d in devs:
        name = d.get("name") if isinstance(d, dict) else None
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SpecError(f"{path}: invalid device name {name!r}")
        if name in out:
            raise SpecError(f"{path}: device {name} is defined twice")
        edits = _check_edits(d.get("containerEdits"), f"{path}: device {name}")
        out[name] = Device(kind, name, edits, spec_edits, path)
    return list(out.values())


def load(dirs: Iterable[Path]) -> Registry:
    """Every device of every spec file in ``dirs``; a later directory takes precedence. A file that
    cannot be used is recorded, not fatal (other vendors' devices still work)."""
    reg = Registry()
    for d in dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(SUFFIXES))[:MAX_SPEC_FILES]
        except FileNotFoundError:
            continue
        except OSError as e:
            reg.problems.append(f"{d}: {e.strerror}")
            continue
        in_dir: dict[str, Device] = {}
        conflicts: set[str] = set()
        for n in names:
            path = Path(d) / n
            try:
                found = devices_of(parse(_read(path), str(path)), str(path))
            except SpecError as e:
                reg.problems.append(str(e))
                continue
            except OSError as e:
                reg.problems.append(f"{path}: {e.strerror}")
                continue
            for dev in found:
                if dev.qualified in in_dir:
                    conflicts.add(dev.qualified)
                    reg.problems.append(f"device {dev.qualified} is defined in both {in_dir[dev.qualified].source} "
                                        f"and {path}")
                in_dir[dev.qualified] = dev
        for q in conflicts:
            in_dir.pop(q, None)
            reg.devices.pop(q, None)
        reg.devices.update(in_dir)
    return reg


def resolve(reg: Registry, names: list[str]) -> list[Device]:
    missing = [n for n in names if n not in reg.devices]
    if missing:
        detail = f" (spec file problems: {'; '.join(reg.problems[:5])})" if reg.problems else ""
        raise errors.InvalidArgument(f"unresolvable CDI devices {', '.join(missing)}{detail}")
    return [reg.devices[n] for n in names]


# ---- applying the edits -----------------------------------------------------------------------------

def _device_node(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(linux.devices entry, cgroup rule) for a device node, missing facts read from the host node."""
    path, host = d["path"], d.get("hostPath") or d["path"]
    kind, major, minor = d.get("type") or "", d.get("major") or 0, d.get("minor") or 0
    mode = d.get("fileMode")
    if not kind or (not major and kind != "p") or mode is None:
        try:
            st = os.stat(host)
        except OSError as e:
            raise errors.InvalidArgument(f"CDI device node {path}: host node {host}: {e.strerror}") from None
        host_kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else \
            "p" if stat.S_ISFIFO(st.st_mode) else ""
        if not host_kind:
            raise errors.InvalidArgument(f"CDI device node {path}: {host} is not a device node")
        if kind and kind not in (host_kind, "u" if host_kind == "c" else host_kind):
            raise errors.InvalidArgument(f"CDI device node {path}: type {kind!r} does not match host {host} "
                                         f"({host_kind!r})")
        kind = kind or host_kind
        if not major and kind != "p":
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if mode is None:
            mode = stat.S_IMODE(st.st_mode)
    dev: dict[str, Any] = {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": mode}
    for k in ("uid", "gid"):
        if d.get(k) is not None:
            dev[k] = d[k]
    rule = None
    if kind in ("c", "b", "u"):
        rule = {"allow": True, "type": "c" if kind == "u" else kind, "major": major, "minor": minor,
                "access": d.get("permissions") or "rwm"}
    return dev, rule


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def edits_for(devices: list[Device]) -> list[dict[str, Any]]:
    """The edits to apply in order: each involved spec's own edits once, then each device's."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for dev in devices:
        if dev.source not in seen and dev.spec_edits:
            seen.add(dev.source)
            out.append(dev.spec_edits)
    return out + [dev.edits for dev in devices]


def with_cdi(edits: list[dict[str, Any]]) -> Option:
    """Merge CDI container edits into the spec: env by key, device nodes by path (with a cgroup
    allow rule each), mounts by destination (then ordered parents first), hooks appended, extra
    groups added."""
    nodes = [_device_node(d) for e in edits for d in e.get("deviceNodes") or []]

    def opt(spec: Spec) -> None:
        if not edits:
            return
        proc, lin = spec["process"], spec["linux"]
        proc["env"] = merge_env(proc.get("env") or [], *(e.get("env") or [] for e in edits))
        for dev, rule in nodes:
            lin["devices"] = [x for x in lin.get("devices") or [] if x["path"] != dev["path"]] + [dev]
            if rule is not None:
                lin.setdefault("resources", {}).setdefault("devices", []).append(rule)
        for e in edits:
            for m in e.get("mounts") or []:
                mount = {"destination": m["containerPath"], "source": m["hostPath"],
                         "options": list(m.get("options") or [])}
                if m.get("type"):
                    mount["type"] = m["type"]
                spec["mounts"] = [x for x in spec["mounts"] if x["destination"] != mount["destination"]] + [mount]
            for h in e.get("hooks") or []:
                hook = {k: h[k] for k in ("path", "args", "env", "timeout") if h.get(k) is not None}
                spec.setdefault("hooks", {}).setdefault(h["hookName"], []).append(hook)
            gids = e.get("additionalGids") or []
            if gids:
                user = proc.setdefault("user", {})
                user["additionalGids"] = list(dict.fromkeys([*(user.get("additionalGids") or []), *gids]))
        if any(e.get("mounts") for e in edits):
            spec["mounts"] = sorted(spec["mounts"], key=lambda m: _depth(m["destination"]))
    return opt


def cdi_option(dirs: Iterable[Path], cdi_devices: Iterable[str], annotations: Mapping[str, str]) -> Option:
    """The spec option for a container's CDI devices (a no-op when it asks for none; the spec files
    are then not read at all)."""
    names = requested(cdi_devices, annotations)
    if not names:
        return with_cdi([])
    return with_cdi(edits_for(resolve(load(dirs), names)))
