"""The same pod through criproxy and through containerd's built-in CRI gives the same process
environment: limits, oom_score_adj, pod sysctls, masked paths, image volumes, seccomp.

Each check reads the effect from inside the container (``/proc/self/…``) in both runtimes, or the
stored OCI spec (``ctr containers info``) where the effect cannot be seen from inside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, pod_config

SLEEP = ["sleep", "1000"]


@pytest.fixture
def builtin_pod(testenv: Environment, builtin_cri: CriClient) -> Iterator[Callable[..., Pod]]:
    """Pods on containerd's own CRI plugin (the reference), with busybox pulled there."""
    builtin_cri.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)),
                                timeout=120)
    made: list[Pod] = []
    logs = testenv.scratch_dir("builtin-logs")

    def make(name: str = "pod", **kw: Any) -> Pod:
        pod = Pod(builtin_cri, pod_config(logs, name, **kw), testenv.busybox_image)
        made.append(pod)
        return pod
    yield make
    for pod in reversed(made):
        pod.cleanup()


def limits(text: str) -> dict[str, tuple[str, str]]:
    """``/proc/<pid>/limits`` as {name: (soft, hard)}."""
    out = {}
    for line in text.splitlines()[1:]:
        m = re.match(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


def stored_spec(ctr: Callable[..., str], cid: str, namespace: str = "criproxy") -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(ctr("containers", "info", cid, namespace=namespace))["Spec"]
    return spec


def test_rlimits_are_inherited_from_containerd(testenv: Environment, make_pod: Callable[..., Pod],
                                               builtin_pod: Callable[..., Pod]) -> None:
    """No RLIMIT_NOFILE 1024 of our own: a container has containerd's limits, as under its CRI."""
    pid = testenv.ctrd.daemon.pid
    assert pid is not None
    containerd = limits(Path(f"/proc/{pid}/limits").read_text())
    ours, theirs = make_pod("rl"), builtin_pod("rl")
    c_ours, c_theirs = ours.run(command=SLEEP), theirs.run(command=SLEEP)
    seen = limits(ours.sh(c_ours, "cat /proc/self/limits"))
    assert seen == limits(theirs.sh(c_theirs, "cat /proc/self/limits"))
    assert seen["Max open files"][1] == containerd["Max open files"][1]
    assert ours.sh(c_ours, "ulimit -n").strip() == theirs.sh(c_theirs, "ulimit -n").strip()
    assert "rlimits" not in stored_spec(testenv.ctr, c_ours)["process"]


def _own_status(pid: int) -> tuple[bool, int]:
    eff = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("CapEff:"))
    return bool(int(eff.split()[1], 16) >> 24 & 1), int(Path(f"/proc/{pid}/oom_score_adj").read_text())


@pytest.mark.parametrize("asked", [-998, 500])
def test_oom_score_adj_as_asked_or_raised_to_our_own(testenv: Environment, criproxy: Any,
                                                     make_pod: Callable[..., Pod], builtin_pod: Callable[..., Pod],
                                                     asked: int) -> None:
    """A value criproxy may set passes exactly; one below its own needs CAP_SYS_RESOURCE and is raised
    to its own without it (the built-in CRI here runs with restrict_oom_score_adj, so the same)."""
    can_lower, own = _own_status(criproxy.pid)
    expected = asked if can_lower or asked >= own else own
    cfg = container_config(testenv.busybox_image, command=SLEEP)
    cfg.linux.resources.oom_score_adj = asked
    ours, theirs = make_pod("oom"), builtin_pod("oom")
    c_ours, c_theirs = ours.run(cfg), theirs.run(cfg)
    assert int(ours.sh(c_ours, "cat /proc/self/oom_score_adj")) == expected
    assert stored_spec(testenv.ctr, c_ours)["process"]["oomScoreAdj"] == expected
    assert ours.sh(c_ours, "cat /proc/self/oom_score_adj") == theirs.sh(c_theirs, "cat /proc/self/oom_score_adj")
    pause = stored_spec(testenv.ctr, ours.id)["process"]["oomScoreAdj"]
    assert pause == (-998 if can_lower else max(-998, own))
    if not can_lower:
        assert "lacks CAP_SYS_RESOURCE" in criproxy.log.read_text()


PORTS = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
PING = "/proc/sys/net/ipv4/ping_group_range"


def _net_sysctls(pod: Pod, cid: str) -> list[str]:
    return [" ".join(pod.sh(cid, f"cat {path}").split()) for path in (PORTS, PING)]


def test_pod_sysctl_defaults_as_containerd_2(testenv: Environment, make_pod: Callable[..., Pod],
                                            builtin_pod: Callable[..., Pod]) -> None:
    """Unprivileged ports and ICMP for every pod with its own netns (the built-in CRI here is set to
    2.x's defaults); a value the pod sets wins; the pod's sysctls stay on the pod, not each container."""
    ours, theirs = make_pod("sysd"), builtin_pod("sysd")
    c_ours, c_theirs = ours.run(command=SLEEP), theirs.run(command=SLEEP)
    assert _net_sysctls(ours, c_ours) == _net_sysctls(theirs, c_theirs) == ["0", "0 2147483647"]
    assert "sysctl" not in stored_spec(testenv.ctr, c_ours)["linux"]
    own = make_pod("syso", linux=cri.LinuxPodSandboxConfig(sysctls={"net.ipv4.ip_unprivileged_port_start": "80"}))
    c_own = own.run(command=SLEEP)
    assert _net_sysctls(own, c_own) == ["80", "0 2147483647"]
    assert stored_spec(testenv.ctr, own.id)["linux"]["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "80", "net.ipv4.ping_group_range": "0 2147483647"}


def test_pod_sysctl_defaults_can_be_turned_off(testenv: Environment, criproxy_factory: Any,
                                               busybox: str) -> None:
    proc = criproxy_factory(["--no-enable-unprivileged-ports", "--no-enable-unprivileged-icmp"])
    with proc.client() as client:
        pod = Pod(client, pod_config(testenv.scratch_dir("logs"), "sysoff"), busybox)
        try:
            cid = pod.run(container_config(busybox, command=SLEEP))
            assert _net_sysctls(pod, cid) == ["1024", "1 0"]                # a new netns's own defaults
            assert "sysctl" not in stored_spec(testenv.ctr, pod.id)["linux"]
        finally:
            pod.cleanup()


def test_procmount_unmasked_means_no_masked_paths(testenv: Environment, make_pod: Callable[..., Pod],
                                                  builtin_pod: Callable[..., Pod], ctr: Callable[..., str]) -> None:
    """Empty masked/readonly lists (kubelet's procMount Unmasked; proto3 cannot send "explicitly
    empty") mean none; kubelet's default lists are applied exactly."""
    from tests.integration.containers.test_container_config import KUBELET_MASKED, KUBELET_READONLY

    ours, theirs = make_pod("um"), builtin_pod("um")
    masked = container_config(testenv.busybox_image, name="m", command=SLEEP)
    masked.linux.security_context.masked_paths.extend(KUBELET_MASKED)
    masked.linux.security_context.readonly_paths.extend(KUBELET_READONLY)
    bare = container_config(testenv.busybox_image, name="u", command=SLEEP)
    check = "head -c 1 /proc/timer_list | wc -c; grep -c ' /proc/sys ' /proc/self/mountinfo || true"
    seen = {}
    for name, pod in (("ours", ours), ("theirs", theirs)):
        for kind, cfg in (("masked", masked), ("bare", bare)):
            seen[name, kind] = pod.sh(pod.run(cfg), check).split()
    assert seen["ours", "masked"] == seen["theirs", "masked"]
    assert seen["ours", "bare"] == seen["theirs", "bare"]
    assert seen["ours", "bare"] == ["1", "0"]              # timer_list readable, /proc/sys not bound read-only
    assert seen["ours", "masked"] == ["0", "1"]
    spec = stored_spec(ctr, ours.containers[-1])["linux"]
    assert not spec.get("maskedPaths") and not spec.get("readonlyPaths")


def test_namespaces_match_the_builtin_cri(testenv: Environment, make_pod: Callable[..., Pod],
                                         builtin_pod: Callable[..., Pod], ctr: Callable[..., str]) -> None:
    """The same namespace types (a cgroup namespace only on a cgroup v2 host) as containerd's CRI."""
    ours, theirs = make_pod("ns"), builtin_pod("ns")
    c_ours, c_theirs = ours.run(command=SLEEP), theirs.run(command=SLEEP)

    def types(spec: dict[str, Any]) -> list[str]:
        return sorted(n["type"] for n in spec["linux"]["namespaces"])
    mine = types(stored_spec(ctr, c_ours))
    assert mine == types(stored_spec(ctr, c_theirs, namespace="k8s.io"))
    assert ("cgroup" in mine) == Path("/sys/fs/cgroup/cgroup.controllers").exists()
