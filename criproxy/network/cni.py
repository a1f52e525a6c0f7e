"""Running a CNI plugin chain per the CNI spec, as libcni does for a conflist.

ADD runs the plugins in order, each getting the previous plugin's result as ``prevResult``; DEL runs
them in reverse, each getting the cached result of the whole ADD (spec ≥ 0.4.0). Runtime capabilities
(``portMappings``, ``bandwidth``, ``ipRanges``, ``dns``, ``io.kubernetes.cri.pod-annotations``) reach
only the plugins whose ``capabilities`` ask for them, under ``runtimeConfig``. ``LOOPBACK`` is the
network containerd's CRI attaches to every pod besides the configured one (interface ``lo``), so a
pod's ``lo`` is up whatever the user's conflist holds. A failing plugin's JSON error
(``code``/``msg``/``details``) becomes the message of ``CniError``. Nothing here knows about pods:
``podsandbox/network.py`` builds the inputs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criproxy.network.cniconf import NetworkConfig

PLUGIN_TIMEOUT = 120.0
# Plugins run in threads of their own so many pods starting at once never wait on the default pool.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cni")


class CniError(Exception):
    """A plugin failed or could not be run; the message says which plugin, which command and why."""


@dataclass(frozen=True)
class Attachment:
    """What identifies one attachment of a network to a pod (the CNI "runtime config")."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capabilities: dict[str, Any] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


LOOPBACK_IFNAME = "lo"
# The network go-cni's WithLoNetwork adds (containerd's CRI loads it for every pod): the host's
# loopback plugin alone, under this name and version, run with CNI_IFNAME=lo.
LOOPBACK = NetworkConfig(path=Path("cni-loopback"), name="cni-loopback", cni_version="0.3.1",
                         plugins=[{"type": "loopback"}],
                         raw={"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]})


def find_plugin(plugin_type: str, bin_dirs: list[Path]) -> Path:
    """The plugin binary, searched in ``bin_dirs`` in order (CNI_PATH semantics)."""
    if "/" in plugin_type or not plugin_type:
        raise CniError(f"invalid CNI plugin type {plugin_type!r}")
    for d in bin_dirs:
        cand = d / plugin_type
        if os.access(cand, os.X_OK):
            return cand
    raise CniError(f"CNI plugin {plugin_type!r} not found in {':'.join(map(str, bin_dirs))}")


def plugin_config(net: NetworkConfig, plugin: dict[str, Any], att: Attachment,
                  prev_result: dict[str, Any] | None) -> dict[str, Any]:
    """One plugin's stdin: its own config plus name, cniVersion, prevResult and its runtimeConfig."""
    conf = dict(plugin)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    wanted = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in att.capabilities.items() if wanted.get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    return conf


def supports_prev_result_on_del(version: str) -> bool:
    """DEL gets prevResult from spec 0.4.0 on (0.1.x-0.3.x plugins would choke on it)."""
    parts = (version or "0.0.0").split(".")
    try:
        nums = tuple(int(x) for x in parts[:3])
    except ValueError:
        return True
    return nums >= (0, 4, 0)


def _plugin_error(plugin_type: str, command: str, rc: int | None, out: bytes, err: bytes) -> CniError:
    try:
        doc = json.loads(out)
        msg = str(doc.get("msg", "")) + (f": {doc['details']}" if doc.get("details") else "")
    except (ValueError, AttributeError):
        msg = (err or out).decode(errors="replace").strip()
    return CniError(f"CNI plugin {plugin_type} failed ({command}, exit {rc}): {msg or 'no output'}")


def _run(argv: list[str], env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run a plugin to completion. ``close_fds=False`` lets CPython use posix_spawn (vfork): a plain
    fork() in a process running grpc runs grpc's fork handlers in the child, which crash it (SIGSEGV
    in an event_engine thread) before exec. criproxy's own descriptors are all close-on-exec."""
    return subprocess.run(argv, input=stdin, capture_output=True, env=env, close_fds=False,
                          timeout=PLUGIN_TIMEOUT, check=False)


async def exec_plugin(command: str, conf: dict[str, Any], att: Attachment, bin_dirs: list[Path]) -> dict[str, Any]:
    """Run one plugin; its parsed stdout (empty dict when it printed nothing, as DEL does)."""
    plugin_type = str(conf.get("type", ""))
    binary = find_plugin(plugin_type, bin_dirs)
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
           "CNI_IFNAME": att.ifname, "CNI_ARGS": att.cni_args(), "CNI_PATH": ":".join(map(str, bin_dirs)),
           "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    loop = asyncio.get_running_loop()
    try:
        res = await loop.run_in_executor(_POOL, _run, [str(binary)], env, json.dumps(conf).encode())
    except subprocess.TimeoutExpired:
        raise CniError(f"CNI plugin {plugin_type} ({command}) timed out after {PLUGIN_TIMEOUT:.0f}s") from None
    except OSError as e:
        raise CniError(f"CNI plugin {plugin_type} ({command}) could not be run: {e}") from None
    if res.returncode != 0:
        raise _plugin_error(plugin_type, command, res.returncode, res.stdout, res.stderr)
    if not res.stdout.strip():
        return {}
    try:
        result: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        raise CniError(f"CNI plugin {plugin_type} ({command}) printed invalid JSON: {res.stdout[:200]!r}") from None
    return result


async def add(net: NetworkConfig, att: Attachment, bin_dirs: list[Path]) -> dict[str, Any]:
    """ADD the whole chain; the last plugin's result (callers DEL on failure: ADD may be half done)."""
    result: dict[str, Any] | None = None
    for plugin in net.plugins:
        out = await exec_plugin("ADD", plugin_config(net, plugin, att, result), att, bin_dirs)
        result = out or result
    return result or {}


async def delete(net: NetworkConfig, att: Attachment, bin_dirs: list[Path],
                 cached: dict[str, Any] | None) -> None:
    """DEL the chain in reverse; every plugin runs even if one fails, the first failure is raised."""
    prev = cached if cached and supports_prev_result_on_del(net.cni_version) else None
    first: CniError | None = None
    for plugin in reversed(net.plugins):
        try:
            await exec_plugin("DEL", plugin_config(net, plugin, att, prev), att, bin_dirs)
        except CniError as e:
            first = first or e
    if first is not None:
        raise first


def pod_ips(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """The pod's IPs from a result: those on ``ifname`` inside the sandbox, IPv4 first (as the CRI does)."""
    ifaces = result.get("interfaces") or []
    ips: list[str] = []
    for entry in result.get("ips") or []:
        idx = entry.get("interface")
        if isinstance(idx, int) and 0 <= idx < len(ifaces):
            iface = ifaces[idx]
            if iface.get("name") != ifname or not iface.get("sandbox"):
                continue
        addr = str(entry.get("address", "")).split("/")[0]
        if addr:
            ips.append(addr)
    for key in ("ip4", "ip6"):  # spec 0.2.0 results
        legacy = result.get(key)
        if isinstance(legacy, dict) and legacy.get("ip"):
            ips.append(str(legacy["ip"]).split("/")[0])
    return sorted(ips, key=lambda a: ipaddress.ip_address(a).version)
