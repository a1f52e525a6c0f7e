"""Pod networking through the CRI socket: pod-to-pod, host network, DNS files, hostPort on loopback."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from criproxy.protos import cri
from tests.harness.env import Environment
from tests.harness.proc import free_port
from tests.integration.sandbox.conftest import Pods, ping, pod_config


def _host_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def test_two_pods_reach_each_other(pods: Pods) -> None:
    a, b = pods.run(pod_config("a")), pods.run(pod_config("b"))
    ip_a, ip_b = pods.status(a).status.network.ip, pods.status(b).status.network.ip
    assert ip_a != ip_b
    assert ping(ip_b, str(pods.info(a)["netnsPath"]))
    assert ping(ip_a, str(pods.info(b)["netnsPath"]))


def test_host_network_pod_shares_host_netns(pods: Pods, ctr: object) -> None:
    sid = pods.run(pod_config("hostnet", host_network=True))
    st = pods.status(sid).status
    assert st.state == cri.SANDBOX_READY and st.network.ip == ""
    assert st.linux.namespaces.options.network == cri.NODE
    info = pods.info(sid)
    assert info["netnsPath"] == ""
    pid = int(info["pid"])  # type: ignore[call-overload]
    assert os.readlink(f"/proc/{pid}/ns/net") == _host_netns()
    pods.stop(sid)
    pods.remove(sid)


def test_dns_config_lands_in_resolv_conf(pods: Pods) -> None:
    dns = cri.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local", "svc.cluster.local"],
                        options=["ndots:5"])
    sid = pods.run(pod_config("dns", dns_config=dns))
    info = pods.info(sid)
    sdir = Path(str(info["sandboxDir"]))
    text = (sdir / "resolv.conf").read_text()
    assert "nameserver 10.96.0.10" in text and "search default.svc.cluster.local svc.cluster.local" in text
    assert "options ndots:5" in text
    assert (sdir / "hostname").read_text() == "dns\n"
    pid = int(info["pid"])  # type: ignore[call-overload]
    inside = Path(f"/proc/{pid}/root/etc/resolv.conf").read_text()
    assert inside == text
    uts = subprocess.run(["nsenter", "-t", str(pid), "--uts", "hostname"], capture_output=True, text=True)
    assert uts.stdout.strip() == "dns"


@contextmanager
def _http_server_in(netns_path: str, port: int, docroot: Path) -> Iterator[None]:
    """busybox httpd as a host process inside the pod's netns (pause itself serves nothing)."""
    proc = subprocess.Popen(["nsenter", f"--net={netns_path}", "busybox", "httpd", "-f", "-p", str(port),
                             "-h", str(docroot)])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _get(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_host_port_answers(pods: Pods, tmp_path: Path) -> None:
    host_port = free_port()
    cfg = pod_config("ports", port_mappings=[cri.PortMapping(protocol=cri.TCP, container_port=8080,
                                                             host_port=host_port)])
    sid = pods.run(cfg)
    ip = pods.status(sid).status.network.ip
    (tmp_path / "index.html").write_text("hello from the pod\n")
    with _http_server_in(str(pods.info(sid)["netnsPath"]), 8080, tmp_path):
        assert _get(f"http://{ip}:8080/") == "hello from the pod\n"
        # portmap DNATs locally originated traffic and masquerades it from loopback to the bridge
        # address, the one peer a pod reaches without a default route.
        assert _get(f"http://127.0.0.1:{host_port}/") == "hello from the pod\n"
    pods.stop(sid)
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert f"--dport {host_port}" not in rules


def test_pause_spec_on_the_host(pods: Pods) -> None:
    """/dev/shm size, sysctls, host PID/IPC, the pod's own namespaces, clamped oom_score_adj."""
    cfg = pod_config("spec")
    cfg.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
    sid = pods.run(cfg)
    pid = int(pods.info(sid)["pid"])  # type: ignore[call-overload]
    shm = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if " /dev/shm " in line]
    assert shm and "size=65536k" in shm[0]
    own_oom = Path("/proc/self/oom_score_adj").read_text().strip()
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == own_oom   # -998 asked, clamped
    sysctl = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    inside = subprocess.run(["nsenter", "-t", str(pid), "--net", "cat", sysctl], capture_output=True,
                            text=True).stdout.strip()
    assert inside == "0"
    for ns in ("pid", "ipc", "net", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")

    host = pod_config("hostns")
    opts = host.linux.security_context.namespace_options
    opts.pid, opts.ipc = cri.NODE, cri.NODE
    hid = pods.run(host)
    hpid = int(pods.info(hid)["pid"])  # type: ignore[call-overload]
    for ns in ("pid", "ipc"):
        assert os.readlink(f"/proc/{hpid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}")
    assert pods.status(hid).status.linux.namespaces.options.pid == cri.NODE


def test_container_in_the_pod_answers_on_the_pod_ip(pods: Pods, testenv: Environment, tmp_path: Path) -> None:
    """The whole point of the sandbox: a container joins its netns and is reached at the pod IP."""
    c = pods.client
    c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=300)
    cfg = pod_config("web")
    cfg.log_directory = str(tmp_path)
    sid = pods.run(cfg)
    ccfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="httpd"),
                               image=cri.ImageSpec(image=testenv.busybox_image),
                               command=["sh", "-c", "echo served-from-the-pod > /tmp/index.html; "
                                                    "exec httpd -f -p 8080 -h /tmp"],
                               log_path="httpd/0.log")
    cid = c.runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                               sandbox_config=cfg)).container_id
    c.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    ip = pods.status(sid).status.network.ip
    assert _get(f"http://{ip}:8080/") == "served-from-the-pod\n"
    pods.stop(sid)
    pods.remove(sid)
