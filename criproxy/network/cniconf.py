"""Finding the CNI network configuration the way the CNI library (libcni) does.

The first file in lexical order among ``*.conflist``, ``*.conf`` and ``*.json`` that parses and names
at least one plugin wins. Status uses this for NetworkReady and RunPodSandbox for the plugin chain,
so both agree on which network a pod gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTENSIONS = (".conflist", ".conf", ".json")


@dataclass(frozen=True)
class NetworkConfig:
    """A parsed conflist (a single .conf is lifted into a one-plugin list)."""

    path: Path
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    raw: dict[str, Any]


class NoNetwork(Exception):
    """Why there is no usable network config; the message becomes NetworkReady's message."""


def parse(path: Path) -> NetworkConfig:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise NoNetwork(f"{path}: {e}") from None
    return parse_dict(data, str(path), single=path.suffix != ".conflist")


def parse_dict(data: Any, source: str, single: bool = False) -> NetworkConfig:
    """Validate an already-loaded config (a conflist, or a single plugin config when ``single``);
    DEL uses this on the copy saved at ADD time, so it runs the chain ADD ran."""
    if not isinstance(data, dict):
        raise NoNetwork(f"{source}: not a JSON object")
    if single and "plugins" not in data:
        plugin = {k: v for k, v in data.items() if k not in ("cniVersion", "name")}
        data = {"cniVersion": data.get("cniVersion", "0.4.0"), "name": data.get("name", ""), "plugins": [plugin]}
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) and p.get("type")
                                                               for p in plugins):
        raise NoNetwork(f"{source}: no plugins with a type")
    if not data.get("name"):
        raise NoNetwork(f"{source}: network has no name")
    return NetworkConfig(Path(source), str(data["name"]), str(data.get("cniVersion", "0.4.0")), plugins, data)


def find(conf_dir: Path) -> NetworkConfig:
    """The network pods get, or NoNetwork saying why there is none."""
    try:
        files = sorted(p for p in conf_dir.iterdir() if p.suffix in EXTENSIONS and p.is_file())
    except FileNotFoundError:
        raise NoNetwork(f"CNI config dir {conf_dir} does not exist") from None
    problems = []
    for path in files:
        try:
            return parse(path)
        except NoNetwork as e:
            problems.append(str(e))
    if problems:
        raise NoNetwork("no valid CNI network config: " + "; ".join(problems))
    raise NoNetwork(f"no network config found in {conf_dir}")
