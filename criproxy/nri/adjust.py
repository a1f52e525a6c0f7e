"""Plugins' ContainerAdjustments merged and applied to a container's OCI spec, as containerd does.

Merging: the plugins answer CreateContainer in index order; each adjusted item (an annotation or env
key, a mount destination, a resource field, ...) may be claimed by one plugin only, a second plugin
setting it fails the creation (:class:`Conflict`). A key or destination with a leading ``-`` removes
the item instead of setting it.

Applying (to the spec as a dict, before containerd sees it): annotations and env set or removed by
key, env replaced in place; args replace ``process.args`` when non-empty; mounts at the same
destination replaced, then re-sorted by destination depth; hooks and rlimits appended; namespaces
added or replaced by type; linux resources: CPU shares/quota/period/realtime/cpus/mems, the memory
limit (swap set to the same value, as containerd does), hugepage limits, unified, pids; cgroups path
and oom_score_adj set. Not applied yet: devices, CDI devices, sysctl, net devices, I/O priority,
scheduler, RDT, memory policy, seccomp policy; an adjustment asking for one of them fails the
creation rather than being silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from criproxy._gen.nri import api_pb2 as api

Spec = dict[str, Any]

_NOT_APPLIED = ("devices", "io_priority", "seccomp_policy", "sysctl", "net_devices", "scheduler", "rdt",
                "memory_policy")


class Conflict(Exception):
    """Two plugins adjusted the same thing, or one asked for what criproxy does not apply."""


def _claim(owners: dict[str, str], what: str, plugin: str) -> None:
    other = owners.get(what)
    if other is not None and other != plugin:
        raise Conflict(f"plugins {other} and {plugin} both adjust {what}")
    owners[what] = plugin


def _unsupported(adj: api.ContainerAdjustment) -> list[str]:
    out = [f"linux.{name}" for name in _NOT_APPLIED
           if (adj.linux.HasField(name) if name in ("io_priority", "seccomp_policy", "scheduler", "rdt",
                                                     "memory_policy") else len(getattr(adj.linux, name)))]
    if adj.CDI_devices:
        out.append("CDI_devices")
    return out


def merge(replies: Sequence[tuple[str, api.ContainerAdjustment]]) -> api.ContainerAdjustment:
    """One adjustment from the plugins' replies in call order; :class:`Conflict` when two plugins
    claim the same item."""
    owners: dict[str, str] = {}
    out = api.ContainerAdjustment()
    for plugin, adj in replies:
        missing = _unsupported(adj)
        if missing:
            raise Conflict(f"plugin {plugin} asks for adjustments criproxy does not apply: {', '.join(missing)}")
        for key, value in adj.annotations.items():
            _claim(owners, f"annotation {key.removeprefix('-')}", plugin)
            out.annotations[key] = value
        for kv in adj.env:
            _claim(owners, f"env {kv.key.removeprefix('-')}", plugin)
            out.env.append(kv)
        for m in adj.mounts:
            _claim(owners, f"mount {m.destination.removeprefix('-')}", plugin)
            out.mounts.append(m)
        if adj.args:
            _claim(owners, "args", plugin)
            out.args[:] = adj.args
        out.hooks.MergeFrom(adj.hooks)
        out.rlimits.extend(adj.rlimits)
        for ns in adj.linux.namespaces:
            _claim(owners, f"namespace {ns.type.removeprefix('-')}", plugin)
            out.linux.namespaces.append(ns)
        if adj.linux.cgroups_path:
            _claim(owners, "cgroups path", plugin)
            out.linux.cgroups_path = adj.linux.cgroups_path
        if adj.linux.HasField("oom_score_adj"):
            _claim(owners, "oom_score_adj", plugin)
            out.linux.oom_score_adj.CopyFrom(adj.linux.oom_score_adj)
        if adj.linux.HasField("resources"):
            _merge_resources(owners, plugin, adj.linux.resources, out.linux.resources)
    return out


def _merge_resources(owners: dict[str, str], plugin: str, r: api.LinuxResources, out: api.LinuxResources) -> None:
    for group, msg, dst in (("memory", r.memory, out.memory), ("cpu", r.cpu, out.cpu)):
        for field, value in msg.ListFields():
            _claim(owners, f"{group}.{field.name}", plugin)
            if field.message_type is not None:
                getattr(dst, field.name).CopyFrom(value)
            else:
                setattr(dst, field.name, value)
    for h in r.hugepage_limits:
        _claim(owners, f"hugepage limit {h.page_size}", plugin)
        out.hugepage_limits.append(h)
    for key, value in r.unified.items():
        _claim(owners, f"unified {key}", plugin)
        out.unified[key] = value
    if r.HasField("pids"):
        _claim(owners, "pids", plugin)
        out.pids.CopyFrom(r.pids)


def _depth(destination: str) -> int:
    return len([p for p in destination.split("/") if p])


def apply(spec: Spec, adj: api.ContainerAdjustment) -> None:
    """Apply a merged adjustment to ``spec`` in place."""
    annotations = spec.setdefault("annotations", {})
    for key, value in adj.annotations.items():
        if key.startswith("-"):
            annotations.pop(key[1:], None)
        else:
            annotations[key] = value
    process = spec.setdefault("process", {})
    if adj.env:
        process["env"] = _env(process.get("env") or [], adj.env)
    if adj.args:
        process["args"] = list(adj.args)
    if adj.rlimits:
        process.setdefault("rlimits", []).extend(
            {"type": r.type, "hard": r.hard, "soft": r.soft} for r in adj.rlimits)
    if adj.mounts:
        _mounts(spec, adj.mounts)
    _hooks(spec, adj.hooks)
    linux = spec.setdefault("linux", {})
    for ns in adj.linux.namespaces:
        kind = ns.type.removeprefix("-")
        kept = [n for n in linux.get("namespaces", []) if n.get("type") != kind]
        if not ns.type.startswith("-"):
            kept.append({"type": ns.type, **({"path": ns.path} if ns.path else {})})
        linux["namespaces"] = kept
    if adj.linux.cgroups_path:
        linux["cgroupsPath"] = adj.linux.cgroups_path
    if adj.linux.HasField("oom_score_adj"):
        process["oomScoreAdj"] = adj.linux.oom_score_adj.value
    if adj.linux.HasField("resources"):
        _resources(linux.setdefault("resources", {}), adj.linux.resources)


def _env(env: list[str], changes: Sequence[api.KeyValue]) -> list[str]:
    out = list(env)
    for kv in changes:
        name = kv.key.removeprefix("-")
        idx = [i for i, e in enumerate(out) if e.split("=", 1)[0] == name]
        if kv.key.startswith("-"):
            out = [e for i, e in enumerate(out) if i not in idx]
        elif idx:
            out[idx[0]] = f"{name}={kv.value}"
            out = [e for i, e in enumerate(out) if i not in idx[1:]]
        else:
            out.append(f"{name}={kv.value}")
    return out


def _mounts(spec: Spec, mounts: Sequence[api.Mount]) -> None:
    current: list[dict[str, Any]] = list(spec.get("mounts") or [])
    for m in mounts:
        dest = m.destination.removeprefix("-")
        current = [c for c in current if c.get("destination") != dest]
        if not m.destination.startswith("-"):
            current.append({"destination": m.destination, "type": m.type, "source": m.source,
                            "options": list(m.options)})
            if {"rshared", "rslave"} & set(m.options):
                spec.setdefault("linux", {})["rootfsPropagation"] = "rshared" if "rshared" in m.options else "rslave"
    current.sort(key=lambda c: _depth(str(c.get("destination", ""))))   # stable: parents before children
    spec["mounts"] = current


_HOOKS = (("prestart", "prestart"), ("create_runtime", "createRuntime"), ("create_container", "createContainer"),
          ("start_container", "startContainer"), ("poststart", "poststart"), ("poststop", "poststop"))


def _hooks(spec: Spec, hooks: api.Hooks) -> None:
    for field, key in _HOOKS:
        for h in getattr(hooks, field):
            hook: dict[str, Any] = {"path": h.path}
            if h.args:
                hook["args"] = list(h.args)
            if h.env:
                hook["env"] = list(h.env)
            if h.HasField("timeout"):
                hook["timeout"] = h.timeout.value
            spec.setdefault("hooks", {}).setdefault(key, []).append(hook)


def _resources(res: dict[str, Any], r: api.LinuxResources) -> None:
    if r.memory.HasField("limit"):
        mem = res.setdefault("memory", {})
        mem["limit"] = r.memory.limit.value
        mem["swap"] = r.memory.limit.value          # containerd sets swap to the limit too
    cpu_fields = (("shares", "shares"), ("quota", "quota"), ("period", "period"),
                  ("realtime_runtime", "realtimeRuntime"), ("realtime_period", "realtimePeriod"))
    for field, key in cpu_fields:
        if r.cpu.HasField(field):
            res.setdefault("cpu", {})[key] = getattr(r.cpu, field).value
    if r.cpu.cpus:
        res.setdefault("cpu", {})["cpus"] = r.cpu.cpus
    if r.cpu.mems:
        res.setdefault("cpu", {})["mems"] = r.cpu.mems
    if r.hugepage_limits:
        res["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit} for h in r.hugepage_limits]
    if r.unified:
        res.setdefault("unified", {}).update(r.unified)
    if r.HasField("pids"):
        res["pids"] = {"limit": r.pids.limit}
