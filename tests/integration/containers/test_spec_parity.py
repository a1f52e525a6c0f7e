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
from tests.harness.criproxy import CriproxyProcess
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
    soft, hard = containerd["Max open files"]
    if soft == hard:        # (Go raises its own soft limit to the hard one; children get the original)
        assert ours.sh(c_ours, "ulimit -n").strip() == soft
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


PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
/* Each argument names one call to try; prints "<name> ok" or "<name> errno=<n>". */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long r;
        unsigned char params[120];
        memset(params, 0, sizeof params);
        if (!strcmp(argv[i], "io_uring_setup")) r = syscall(SYS_io_uring_setup, 1, params);
        else if (!strcmp(argv[i], "vsock")) r = socket(40, SOCK_STREAM, 0);
        else if (!strcmp(argv[i], "inet")) r = socket(AF_INET, SOCK_STREAM, 0);
        else if (!strcmp(argv[i], "unix")) r = socket(AF_UNIX, SOCK_STREAM, 0);
        else { printf("%s unknown\n", argv[i]); continue; }
        if (r < 0) printf("%s errno=%d\n", argv[i], errno);
        else printf("%s ok\n", argv[i]);
    }
    return 0;
}
"""
PROBES = ["io_uring_setup", "vsock", "inet", "unix"]


@pytest.fixture(scope="module")
def probe(testenv: Environment, busybox: str, criproxy_proc: CriproxyProcess) -> tuple[str, dict[str, str]]:
    """An image with a static probe binary (busybox has no applet making these calls), and what the
    probe gets on the host itself, unconfined."""
    from tests.harness import File, ImageConfig, build_image, busybox_layers
    from tests.harness.proc import run

    work = testenv.scratch_dir("probe")
    (work / "probe.c").write_text(PROBE_C)
    run(["gcc", "-static", "-O2", "-o", str(work / "probe"), str(work / "probe.c")])
    host = _probe_results(run([str(work / "probe"), *PROBES]))
    layout = build_image("sysprobe", "v1", {"probe": File(work / "probe", 0o755)},
                         ImageConfig(cmd=["sleep", "1000"]), base=busybox_layers())
    ref = testenv.push(layout)
    criproxy_proc.ensure_running()
    with criproxy_proc.client() as c:
        c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=120)
    return ref, host


def _probe_results(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines())


def _seccomp_cfg(image: str, name: str, kind: int) -> cri.ContainerConfig:
    cfg = container_config(image, name=name, command=SLEEP)
    cfg.linux.security_context.seccomp.profile_type = kind  # type: ignore[assignment]
    return cfg


def test_runtime_default_seccomp_refuses_io_uring_and_vsock(make_pod: Callable[..., Pod],
                                                             probe: tuple[str, dict[str, str]]) -> None:
    """RuntimeDefault is an allow-list: io_uring_setup and socket(AF_VSOCK) fail with EPERM/ENOSYS;
    ordinary sockets work; the same calls under Unconfined get what the host gets."""
    image, host = probe
    if host["io_uring_setup"] != "ok" or host["vsock"] != "ok":
        pytest.skip(f"the host itself refuses these calls: {host}")
    pod = make_pod("sec")
    confined = pod.run(_seccomp_cfg(image, "d", cri.SecurityProfile.RuntimeDefault))
    free = pod.run(_seccomp_cfg(image, "u", cri.SecurityProfile.Unconfined))
    seen = _probe_results(pod.sh(confined, "/probe " + " ".join(PROBES)))
    assert seen["io_uring_setup"] in ("errno=1", "errno=38") and seen["vsock"] in ("errno=1", "errno=38"), seen
    assert seen["inet"] == seen["unix"] == "ok"
    assert _probe_results(pod.sh(free, "/probe " + " ".join(PROBES))) == host


def _unconditional(profile: dict[str, Any]) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


def test_runtime_default_covers_what_containerd_allows(testenv: Environment, make_pod: Callable[..., Pod],
                                                       builtin_pod: Callable[..., Pod],
                                                       ctr: Callable[..., str]) -> None:
    """Same shape as the built-in CRI's profile (allow-list, same architectures, personality by
    argument, clone by flags); everything it allows outright we allow too, except io_uring (refused
    since containerd 2.0) and socket (allowed only for families other than AF_VSOCK). Run against
    every containerd of the matrix: 1.7 and 2.x allow more outright than 1.6 (process_vm_readv/writev,
    name_to_handle_at), and criproxy follows the newer."""
    ours, theirs = make_pod("cov"), builtin_pod("cov")
    cfg = _seccomp_cfg(testenv.busybox_image, "c", cri.SecurityProfile.RuntimeDefault)
    mine = stored_spec(ctr, ours.run(cfg))["linux"]["seccomp"]
    ref = stored_spec(ctr, theirs.run(cfg), namespace="k8s.io")["linux"]["seccomp"]
    assert (mine["defaultAction"], mine["architectures"]) == (ref["defaultAction"], ref["architectures"])
    missing = _unconditional(ref) - _unconditional(mine)
    assert missing <= {"io_uring_setup", "io_uring_enter", "io_uring_register", "socket"}, missing
    for name in ("personality", "clone"):
        assert sorted(json.dumps(r["args"], sort_keys=True) for r in mine["syscalls"] if r["names"] == [name]) == \
            sorted(json.dumps(r["args"], sort_keys=True) for r in ref["syscalls"] if r["names"] == [name]), name


def test_ordinary_workload_runs_under_runtime_default(make_pod: Callable[..., Pod], busybox: str) -> None:
    """Everyday busybox work (fork/exec, pipes, files, signals, sockets, chown/chmod, a local server)
    succeeds under the allow-list, pause included."""
    pod = make_pod("work", linux=cri.LinuxPodSandboxConfig(security_context=cri.LinuxSandboxSecurityContext(
        seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault))))
    cid = pod.run(_seccomp_cfg(busybox, "w", cri.SecurityProfile.RuntimeDefault))
    script = ("set -e; mkdir -p /tmp/w/d && cd /tmp/w && echo hi > f && chmod 600 f && chown 1000:1000 f; "
              "ln -s f l && cat l | tr a-z A-Z | sort; tar cf t.tar f d && tar tf t.tar | wc -l; "
              "sleep 30 & kill $!; wait $! || true; date +%Y > /dev/null; ps -o pid | wc -l > /dev/null; "
              "httpd -p 127.0.0.1:8080 -h /tmp/w; wget -q -O - http://127.0.0.1:8080/f; "
              "nslookup localhost 127.0.0.1 > /dev/null 2>&1 || true; echo done")
    out = pod.sh(cid, script).split()
    assert out == ["HI", "2", "hi", "done"], out


@pytest.fixture(scope="module")
def volume_image(testenv: Environment, busybox: str, criproxy_proc: CriproxyProcess) -> str:
    """An image declaring VOLUMEs, with content at /data (owned by app) and at /cfg."""
    from tests.harness import Dir, File, ImageConfig, build_image, busybox_layers

    layout = build_image("volimg", "v1", {"data": Dir(0o750, 1000, 1000),
                                          "data/seed.txt": File("from image\n", 0o640, 1000, 1000),
                                          "data/sub/deep.txt": File("deep\n"), "cfg/x": File("x\n")},
                         ImageConfig(cmd=["sleep", "1000"], volumes=["/data", "/empty", "/cfg"]),
                         base=busybox_layers())
    ref = testenv.push(layout)
    criproxy_proc.ensure_running()
    with criproxy_proc.client() as c:
        c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=120)
    return ref


def test_image_volumes_seeded_per_container_and_removed(testenv: Environment, criproxy_proc: CriproxyProcess,
                                                        make_pod: Callable[..., Pod],
                                                        builtin_pod: Callable[..., Pod], builtin_cri: CriClient,
                                                        volume_image: str) -> None:
    """Each VOLUME not mounted by the CRI config is a bind-mounted dir of the container's own,
    seeded from the image (content, owner, mode); writes land there, not in the rootfs; a second
    container gets a fresh copy; RemoveContainer removes the dir. The built-in CRI sees the same."""
    builtin_cri.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=volume_image)), timeout=120)
    host_cfg = testenv.scratch_dir("cfgmount")
    (host_cfg / "from-host").write_text("h\n")
    cfg = container_config(volume_image, command=SLEEP, mounts=[cri.Mount(container_path="/cfg",
                                                                          host_path=str(host_cfg))])
    check = ("cat /data/seed.txt /data/sub/deep.txt; stat -c '%u:%g %a' /data /data/seed.txt; ls /empty | wc -l; "
             "ls /cfg; grep -c -E ' /(data|empty) ' /proc/self/mountinfo")
    ours, theirs = make_pod("vol"), builtin_pod("vol")
    c_ours = ours.run(cfg)
    seen = ours.sh(c_ours, check)
    assert seen == theirs.sh(theirs.run(cfg), check)
    assert seen.split("\n") == ["from image", "deep", "1000:1000 750", "1000:1000 640", "0", "from-host", "2", ""]
    ours.sh(c_ours, "echo written > /data/new")
    vol_dirs = list((criproxy_proc.root / "containers" / c_ours / "volumes").iterdir())
    assert len(vol_dirs) == 2 and [(d / "new").read_text() for d in vol_dirs if (d / "new").exists()] == ["written\n"]
    second = ours.run(container_config(volume_image, name="c2", command=SLEEP))
    assert ours.exec(second, "cat", "/data/new").exit_code != 0               # its own fresh copy
    assert ours.sh(second, "cat /cfg/x") == "x\n"                              # no CRI mount: the image volume
    ours.rt.StopContainer(cri.StopContainerRequest(container_id=c_ours, timeout=0))
    ours.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=c_ours))
    assert not (criproxy_proc.root / "containers" / c_ours).exists()


def test_no_resources_means_no_oom_score_adj(testenv: Environment, make_pod: Callable[..., Pod],
                                             builtin_pod: Callable[..., Pod], ctr: Callable[..., str]) -> None:
    """A config without linux.resources sets no oomScoreAdj (the shim's is inherited), as containerd."""
    ours, theirs = make_pod("nores"), builtin_pod("nores")
    cfg = container_config(testenv.busybox_image, command=SLEEP)
    assert not cfg.linux.HasField("resources")
    c_ours, c_theirs = ours.run(cfg), theirs.run(cfg)
    assert "oomScoreAdj" not in stored_spec(ctr, c_ours)["process"]
    assert "oomScoreAdj" not in stored_spec(ctr, c_theirs, namespace="k8s.io")["process"]
    assert ours.sh(c_ours, "cat /proc/self/oom_score_adj") == theirs.sh(c_theirs, "cat /proc/self/oom_score_adj")


def test_memory_limit_without_swap_limit_means_no_swap(make_pod: Callable[..., Pod], builtin_pod: Callable[..., Pod],
                                                       testenv: Environment) -> None:
    memsw = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    if not Path(memsw).exists() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("no swap accounting on this host")
    cfg = container_config(testenv.busybox_image, command=SLEEP)
    cfg.linux.resources.memory_limit_in_bytes = 64 << 20
    ours, theirs = make_pod("swap"), builtin_pod("swap")
    read = f"cat {memsw} 2>/dev/null || cat /sys/fs/cgroup/memory.swap.max"
    seen = ours.sh(ours.run(cfg), read).strip()
    assert seen == theirs.sh(theirs.run(cfg), read).strip()
    assert seen in (str(64 << 20), "0")          # v1: memory+swap = memory; v2: no swap


def test_privileged_host_devices_skip_symlinks(make_pod: Callable[..., Pod], builtin_pod: Callable[..., Pod],
                                               testenv: Environment) -> None:
    linux = cri.LinuxPodSandboxConfig(security_context=cri.LinuxSandboxSecurityContext(privileged=True))
    ours, theirs = make_pod("privdev", linux=linux), builtin_pod("privdev", linux=linux)
    cfg = container_config(testenv.busybox_image, command=SLEEP)
    cfg.linux.security_context.privileged = True
    check = "for f in /dev/stdin /dev/fd; do readlink $f || echo $f-not-a-link; done; test -c /dev/null && echo devnull"
    seen = ours.sh(ours.run(cfg), check)
    assert seen == theirs.sh(theirs.run(cfg), check) and seen.split() == ["/proc/self/fd/0", "/proc/self/fd",
                                                                          "devnull"]


def test_status_reports_the_applied_resources(testenv: Environment, make_pod: Callable[..., Pod],
                                              builtin_pod: Callable[..., Pod]) -> None:
    """ContainerStatus.resources is what the spec applied (clamped oom_score_adj, derived swap,
    hugepage limits only with the controller), as the built-in CRI reports it."""
    cfg = container_config(testenv.busybox_image, command=SLEEP)
    r = cfg.linux.resources
    r.oom_score_adj, r.memory_limit_in_bytes, r.cpu_shares = -998, 64 << 20, 256
    r.hugepage_limits.add(page_size="2MB", limit=0)
    ours, theirs = make_pod("stres"), builtin_pod("stres")
    c_ours, c_theirs = ours.run(cfg), theirs.run(cfg)
    assert ours.status(c_ours).resources.linux == theirs.status(c_theirs).resources.linux
    update = cri.LinuxContainerResources(memory_limit_in_bytes=96 << 20, cpu_shares=512)
    for pod, cid in ((ours, c_ours), (theirs, c_theirs)):
        pod.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(container_id=cid, linux=update))
    assert ours.status(c_ours).resources.linux == theirs.status(c_theirs).resources.linux
    assert ours.status(c_ours).resources.linux.memory_limit_in_bytes == 96 << 20
