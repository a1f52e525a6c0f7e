"""The pause container's OCI spec decisions, without containerd."""

from __future__ import annotations

from typing import Any

from criproxy.protos import cri
from criproxy.translate.sandbox_spec import SandboxFiles, pause_spec, pod_sysctls, process_args

FILES = SandboxFiles(hostname="/r/hostname", hosts="/r/hosts", resolv_conf="/r/resolv.conf", shm="/s/shm")
IMAGE = {"config": {"Entrypoint": ["/pause"], "Env": ["PATH=/bin"]}}


def _spec(cfg: cri.PodSandboxConfig, netns: str = "/run/netns/x") -> dict[str, Any]:
    return pause_spec("sid", cfg, IMAGE, "pause:3.9", netns, FILES, 0)


def _ns(spec: dict[str, Any]) -> dict[str, str]:
    return {n["type"]: n.get("path", "") for n in spec["linux"]["namespaces"]}


def test_pod_network_namespace_and_files() -> None:
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid="u"), hostname="p")
    spec = _spec(cfg)
    assert _ns(spec)["network"] == "/run/netns/x" and "uts" in _ns(spec) and "pid" in _ns(spec)
    assert spec["hostname"] == "p" and spec["process"]["args"] == ["/pause"]
    mounts = {m["destination"]: m["source"] for m in spec["mounts"]}
    assert mounts["/etc/resolv.conf"] == "/r/resolv.conf" and mounts["/dev/shm"] == "/s/shm"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == "sid"
    assert spec["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
    assert spec["root"]["readonly"] is True and spec["process"]["oomScoreAdj"] == 0


def test_host_namespaces() -> None:
    cfg = cri.PodSandboxConfig(hostname="ignored")
    opts = cfg.linux.security_context.namespace_options
    opts.network, opts.pid, opts.ipc = cri.NODE, cri.NODE, cri.NODE
    spec = _spec(cfg, netns="")
    assert set(_ns(spec)) == {"mount"}
    assert "hostname" not in spec


def test_security_sysctls_cgroups() -> None:
    cfg = cri.PodSandboxConfig()
    cfg.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
    cfg.linux.cgroup_parent = "/kubepods/podu"
    cfg.linux.security_context.run_as_user.value = 65535
    cfg.linux.security_context.supplemental_groups.append(5)
    spec = _spec(cfg)
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert spec["linux"]["cgroupsPath"] == "/kubepods/podu/sid"
    assert spec["process"]["user"]["uid"] == 65535 and spec["process"]["user"]["additionalGids"] == [5]


PORTS, PING = "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range"


def test_pod_sysctl_defaults_of_containerd_2() -> None:
    cfg = cri.PodSandboxConfig()
    cfg.linux.sysctls["kernel.shm_rmid_forced"] = "1"
    assert pod_sysctls(cfg, True, True, False) == {"kernel.shm_rmid_forced": "1", PORTS: "0",
                                                   PING: "0 2147483647"}
    assert pod_sysctls(cfg, False, False, False) == {"kernel.shm_rmid_forced": "1"}
    assert pod_sysctls(cfg, True, True, True) == {"kernel.shm_rmid_forced": "1", PORTS: "0"}
    cfg.linux.sysctls[PORTS] = "80"
    cfg.linux.sysctls[PING] = "0 0"
    assert pod_sysctls(cfg, True, True, False)[PORTS] == "80"                # the pod's own value wins
    assert pod_sysctls(cfg, True, True, False)[PING] == "0 0"
    host = cri.PodSandboxConfig()
    host.linux.security_context.namespace_options.network = cri.NODE
    assert pod_sysctls(host, True, True, False) == {}                       # the host's netns: untouched
    spec = pause_spec("sid", cfg, IMAGE, "pause:3.9", "/run/netns/x", FILES, 0,
                      pod_sysctls(cri.PodSandboxConfig(), True, True, False))
    assert spec["linux"]["sysctl"] == {PORTS: "0", PING: "0 2147483647"}


def test_process_args_default() -> None:
    assert process_args({}) == ["/pause"]
    assert process_args({"config": {"Cmd": ["/bin/sleep", "inf"]}}) == ["/bin/sleep", "inf"]


def test_seccomp_runtime_default_unless_privileged() -> None:
    cfg = cri.PodSandboxConfig()
    cfg.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    assert _spec(cfg)["linux"]["seccomp"]["syscalls"]
    cfg.linux.security_context.privileged = True
    assert "seccomp" not in _spec(cfg)["linux"]
    assert "seccomp" not in _spec(cri.PodSandboxConfig())["linux"]
