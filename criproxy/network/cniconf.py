"""Finding the CNI network configuration the way the CNI library (libcni) does.

The first file in lexical order among ``*.conflist``, ``*.conf`` and ``*.json`` that parses and names
at least one plugin wins. Status uses this for NetworkReady and RunPodSandbox for the plugin chain,
so both agree on which network a pod gets.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from criproxy.hostfile import HostFileError, read_regular

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


MAX_CONF_BYTES = 1 << 20   # a conflist is a few hundred bytes; more is not a network config


def parse(path: Path) -> NetworkConfig:
    try:
        data = json.loads(read_regular(path, MAX_CONF_BYTES))
    except (OSError, ValueError, HostFileError) as e:
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


Signature = tuple[tuple[str, int, int, int], ...]


def _candidates(conf_dir: Path) -> tuple[list[Path], Signature]:
    """The config files in lexical order (regular files only: a FIFO named like a conflist must not be
    opened) and a signature of their names, sizes, mtimes and inodes."""
    try:
        entries = sorted(os.scandir(conf_dir), key=lambda e: e.name)
    except FileNotFoundError:
        raise NoNetwork(f"CNI config dir {conf_dir} does not exist") from None
    files, sig = [], []
    for e in entries:
        if not e.name.endswith(EXTENSIONS):
            continue
        try:
            st = e.stat()            # follows a link, as libcni does
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.append(Path(e.path))
            sig.append((e.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return files, tuple(sig)


@functools.lru_cache(maxsize=8)
def _first_valid_of(conf_dir: Path, sig: Signature) -> NetworkConfig | NoNetwork:
    """Memo of _first_valid by the files' signature: Status (polled by the kubelet) and every
    RunPodSandbox ask for the network; a file is parsed again only when its name, size, mtime or
    inode changed, so a conflist dropped in or edited is still seen on the next call."""
    files = [conf_dir / name for name, *_ in sig]
    try:
        return _first_valid(conf_dir, files)
    except NoNetwork as e:
        return e


def find(conf_dir: Path) -> NetworkConfig:
    """The network pods get, or NoNetwork saying why there is none (the files' stats are read each
    time; their content only when they changed)."""
    answer = _first_valid_of(conf_dir, _candidates(conf_dir)[1])
    if isinstance(answer, NoNetwork):
        raise NoNetwork(str(answer))
    return answer


def _first_valid(conf_dir: Path, files: list[Path]) -> NetworkConfig:
    problems = []
    for path in files:
        try:
            return parse(path)
        except NoNetwork as e:
            problems.append(str(e))
    if problems:
        raise NoNetwork("no valid CNI network config: " + "; ".join(problems))
    raise NoNetwork(f"no network config found in {conf_dir}")
