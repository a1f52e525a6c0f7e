"""Per-session network slots and the CNI conflists the tests use.

Several suites share one machine, so each session takes a slot N (an flock'ed file) and owns the
bridges ``cpx{N}`` (criproxy's network) and ``cpk{N}`` (the built-in CRI's) and their subnets. Pods get
only the connected route of their subnet: no default route, no masquerade, so pod traffic never leaves
this machine.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .proc import FileLock, HarnessError, run

LOCK_DIR = Path("/run/criproxy-testenv")
SLOTS = 8
CNI_BIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True)
class Network:
    """One bridge network: its CNI name, bridge device and subnet."""

    name: str
    bridge: str
    subnet: str

    @property
    def gateway(self) -> str:
        """The bridge's own address (the first host of the subnet), reachable from pods."""
        a, b, _, _ = self.subnet.split("/")[0].split(".")
        return f"{a}.{b}.0.1"

    def contains(self, ip: str) -> bool:
        a, b, _, _ = self.subnet.split("/")[0].split(".")
        return ip.startswith(f"{a}.{b}.")


@dataclass
class Slot:
    """The held slot: index, lock and the two networks it grants."""

    index: int
    lock: FileLock

    @property
    def criproxy_net(self) -> Network:
        n = self.index
        return Network(f"cpx{n}", f"cpx{n}", f"10.{100 + 2 * n}.0.0/16")

    @property
    def containerd_net(self) -> Network:
        n = self.index
        return Network(f"cpk{n}", f"cpk{n}", f"10.{101 + 2 * n}.0.0/16")

    def release(self) -> None:
        self.lock.release()


def acquire_slot(timeout: float = 900.0) -> Slot:
    """Take the first free slot, waiting (bounded) when all are busy; clears a dead holder's leftovers."""
    deadline = time.monotonic() + timeout
    while True:
        for n in range(SLOTS):
            lock = FileLock(LOCK_DIR / f"slot-{n}.lock")
            if lock.try_acquire():
                slot = Slot(n, lock)
                cleanup_slot_network(slot)
                return slot
        if time.monotonic() > deadline:
            raise HarnessError(f"no free test slot in {LOCK_DIR} after {timeout:.0f}s")
        time.sleep(1)


def conflist(net: Network, ipam_dir: Path) -> dict[str, object]:
    """bridge (gateway, no masquerade, no extra routes) + host-local + portmap: the shape users write.

    No ``loopback``: bringing a pod's ``lo`` up is the runtime's duty (containerd's CRI does it
    whatever the conflist says), and a test conflist that did it would hide a runtime that does not.
    Both criproxy and the built-in CRI get this shape."""
    return {
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {"type": "bridge", "bridge": net.bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": net.subnet}]],
                      "dataDir": str(ipam_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_conf_dir(conf_dir: Path, net: Network, ipam_dir: Path) -> Path:
    """A CNI conf dir holding exactly one conflist for ``net``; returns the conflist path."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    ipam_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / f"10-{net.name}.conflist"
    path.write_text(json.dumps(conflist(net, ipam_dir), indent=2) + "\n")
    return path


def _ip_json(*args: str) -> list[dict[str, object]]:
    out = run(["ip", "-j", *args], check=False).strip()
    return json.loads(out) if out else []


def netns_on_bridges(bridges: list[str]) -> list[str]:
    """Names of /run/netns entries whose veth peers hang off ``bridges`` (pods of this slot)."""
    ids = set()
    for br in bridges:
        for link in _ip_json("link", "show", "master", br):
            if "link_netnsid" in link:
                ids.add(link["link_netnsid"])
    return [str(ns["name"]) for ns in _ip_json("netns", "list") if ns.get("id") in ids]


def portmap_leftovers(networks: list[str]) -> list[tuple[list[str], str]]:
    """portmap's nat rules for pods of ``networks`` that never got a CNI DEL: (jump rule, chain)."""
    out = run(["iptables-save", "-t", "nat"], check=False)
    found = []
    for line in out.splitlines():
        if not line.startswith("-A CNI-HOSTPORT-DNAT "):
            continue
        args = shlex.split(line)
        comment = args[args.index("--comment") + 1] if "--comment" in args else ""
        if any(comment.startswith(f'dnat name: "{n}" ') for n in networks) and "-j" in args:
            found.append((args[1:], args[args.index("-j") + 1]))
    return found


def cleanup_portmap(networks: list[str]) -> None:
    """Remove leftover hostPort DNAT rules of ``networks`` so a later session's ports are not hijacked."""
    for rule, chain in portmap_leftovers(networks):
        run(["iptables", "-w", "-t", "nat", "-D", *rule], check=False)
        run(["iptables", "-w", "-t", "nat", "-F", chain], check=False)
        run(["iptables", "-w", "-t", "nat", "-X", chain], check=False)


def cleanup_slot_network(slot: Slot) -> None:
    """Delete the slot's pod netns (/run/netns entries on its bridges), portmap rules and bridges."""
    bridges = [slot.criproxy_net.bridge, slot.containerd_net.bridge]
    cleanup_portmap([slot.criproxy_net.name, slot.containerd_net.name])
    for ns in netns_on_bridges(bridges):
        run(["ip", "netns", "delete", ns], check=False)
    for br in bridges:
        with contextlib.suppress(HarnessError):
            if Path(f"/sys/class/net/{br}").exists():
                run(["ip", "link", "delete", br, "type", "bridge"])
