"""Issue 2's contract through the real CRI socket: Version, Status, RuntimeConfig, the socket itself,
single-instance locking, managed containerd and RuntimeReady following containerd's life."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment


def _conditions(client: CriClient) -> dict[str, cri.RuntimeCondition]:
    resp = client.runtime.Status(cri.StatusRequest(), timeout=10)
    return {c.type: c for c in resp.status.conditions}


def _wait_for(pred: object, timeout: float) -> float:
    """Poll ``pred`` every 100 ms; return how long it took, fail after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"condition not met within {timeout}s")


def test_version(cri: CriClient) -> None:
    v = cri.runtime.Version(cri.pb.VersionRequest(version="v1"))
    assert (v.runtime_name, v.runtime_api_version) == ("criproxy", "v1")
    assert v.runtime_version


def test_status_ready(cri: CriClient, testenv: Environment) -> None:
    conds = _conditions(cri)
    assert conds["RuntimeReady"].status is True
    assert conds["NetworkReady"].status is True, conds["NetworkReady"].message
    verbose = cri.runtime.Status(cri.pb.StatusRequest(verbose=True))
    assert '"version": "1.' in verbose.info["containerd"] or '"version": "2.' in verbose.info["containerd"]
    assert {h.name for h in verbose.runtime_handlers} >= {"", "runc"}


def test_network_not_ready_without_cni_config(criproxy_factory: object, tmp_path: Path) -> None:
    empty = tmp_path / "net.d"
    empty.mkdir()
    proc: CriproxyProcess = criproxy_factory(extra_args=["--cni-conf-dir", str(empty)])  # type: ignore[operator]
    with proc.client() as client:
        net = _conditions(client)["NetworkReady"]
        assert net.status is False and net.reason == "NetworkPluginNotReady"
        (empty / "10-x.conflist").write_text(          # user-shaped; Status only reads it, no pod runs here
            '{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge","bridge":"cpxnotused0"}]}')
        assert _conditions(client)["NetworkReady"].status is True  # follows the dir without a restart


def test_runtime_config_reports_configured_driver(cri: CriClient) -> None:
    # The harness sets cgroupfs explicitly (its containerd runs runc with SystemdCgroup = false).
    assert cri.runtime.RuntimeConfig(cri.pb.RuntimeConfigRequest()).linux.cgroup_driver == cri.pb.CGROUPFS


def test_runtime_config_auto_driver_follows_host(criproxy_factory: object) -> None:
    proc: CriproxyProcess = criproxy_factory(extra_args=["--cgroup-driver", "auto"])  # type: ignore[operator]
    with proc.client() as client:
        want = client.pb.SYSTEMD if Path("/run/systemd/system").is_dir() else client.pb.CGROUPFS
        assert client.runtime.RuntimeConfig(client.pb.RuntimeConfigRequest()).linux.cgroup_driver == want


def test_unimplemented_rpc_says_so(cri: CriClient) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        cri.runtime.CheckpointContainer(cri.pb.CheckpointContainerRequest(container_id="x"))
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in (exc.value.details() or "")


def test_socket_mode_and_owner(criproxy: CriproxyProcess) -> None:
    st = criproxy.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_second_instance_on_same_socket_refused(criproxy: CriproxyProcess, testenv: Environment) -> None:
    r = subprocess.run([sys.executable, "-m", "criproxy", "serve", "--listen", str(criproxy.socket),
                        "--containerd-address", str(testenv.containerd_address), "--managed-containerd", "never",
                        "--root", str(criproxy.root), "--state", str(criproxy.state)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "already serving" in r.stderr and "Traceback" not in r.stderr
    with criproxy.client() as client:
        assert client.version().runtime_name == "criproxy"  # the first one keeps serving


def test_runtime_ready_follows_containerd(cri: CriClient, testenv: Environment) -> None:
    assert _conditions(cri)["RuntimeReady"].status is True
    testenv.ctrd.stop()
    try:
        took = _wait_for(lambda: not _conditions(cri)["RuntimeReady"].status, 5)
        cond = _conditions(cri)["RuntimeReady"]
        assert cond.reason and cond.message, "a NotReady condition must say why"
    finally:
        testenv.ctrd.start()
    back = _wait_for(lambda: _conditions(cri)["RuntimeReady"].status, 5)
    assert took <= 5 and back <= 5


def test_managed_containerd_lifecycle(testenv: Environment) -> None:
    """The README's run command mode: criproxy starts its own containerd and stops it on exit."""
    base = testenv.base / "managed"
    sock = base / "c.sock"
    log = base / "criproxy.log"
    base.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "criproxy", "serve", "--managed-containerd", "always",
                                 "--listen", str(sock), "--root", str(base / "root"), "--state", str(base / "st"),
                                 "--containerd-address", str(base / "unused.sock"),
                                 "--containerd-binary", str(testenv.ctrd.binary)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        with CriClient(sock) as client:
            _wait_for(lambda: sock.exists() and _answers(client), 30)
            assert client.version().runtime_name == "criproxy"
        m = re.search(r"started managed containerd pid (\d+)", log.read_text())
        assert m, log.read_text()
        ctrd_pid = int(m.group(1))
        assert Path(f"/proc/{ctrd_pid}").exists()
        # The config speaks the format of the binary under test, with every CRI plugin off (2.x would
        # migrate a version 2 file, but there disabling io.containerd.grpc.v1.cri leaves its halves on).
        conf = (base / "st" / "containerd" / "config.toml").read_text()
        assert conf.startswith(f"version = {3 if testenv.ctrd.major >= 2 else 2}\n"), conf
        assert '"io.containerd.grpc.v1.cri"' in conf
        assert Path(os.readlink(f"/proc/{ctrd_pid}/exe")) == testenv.ctrd.binary.resolve()
        plugins = client_plugins(testenv, base / "st" / "containerd" / "containerd.sock")
        assert not any(p.startswith(("io.containerd.grpc.v1.cri", "io.containerd.cri.v1")) and ok
                       for p, ok in plugins.items()), plugins
        assert not plugins.get("io.containerd.nri.v1.nri"), plugins  # NRI's socket is machine-wide
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert not _pid_alive(ctrd_pid), "managed containerd must stop with criproxy"
    assert not sock.exists()


def client_plugins(testenv: Environment, address: Path) -> dict[str, bool]:
    """``ctr plugins ls`` of the containerd at ``address``: plugin ``type.id`` -> loaded ok."""
    out = subprocess.run([testenv.ctrd.ctr_binary, "-a", str(address), "plugins", "ls"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return {f"{r[0]}.{r[1]}": r[-1] == "ok" for r in rows if len(r) >= 3}


def _answers(client: CriClient) -> bool:
    try:
        client.version(timeout=2)
        return True
    except grpc.RpcError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"


def test_stale_socket_file_is_replaced(criproxy_factory: object) -> None:
    """A socket file left by a crashed criproxy (nobody listening) must not block a restart."""
    import socket as pysocket

    proc: CriproxyProcess = criproxy_factory(start=False)  # type: ignore[operator]
    proc.socket.parent.mkdir(parents=True, exist_ok=True)
    s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    s.bind(str(proc.socket))
    s.close()  # the file stays, with no listener behind it
    assert proc.socket.exists()
    proc.start()
    with proc.client() as client:
        assert client.version().runtime_name == "criproxy"


@pytest.mark.parametrize("where", ["too-long", "taken-by-a-file", "debug-socket"])
def test_unbindable_cri_socket_is_one_line(criproxy: CriproxyProcess, testenv: Environment, tmp_path: Path,
                                           where: str) -> None:
    """A socket path over the kernel's 108-byte limit, a directory where the socket should be, a
    debug socket in a missing directory: the operator reads one line naming the path, not a traceback."""
    listen, extra = tmp_path / "c.sock", []
    if where == "too-long":
        listen = tmp_path / ("d" * 60) / ("s" * 60 + ".sock")
    elif where == "taken-by-a-file":
        listen = tmp_path / "dir.sock"
        (listen / "inside").mkdir(parents=True)
    else:
        extra = ["--debug-socket", str(tmp_path / "no-such-dir" / "debug.sock")]
    r = subprocess.run([sys.executable, "-m", "criproxy", "serve", "--listen", str(listen), *extra,
                        "--containerd-address", str(testenv.containerd_address), "--managed-containerd", "never",
                        "--namespace", "unbindable", "--root", str(tmp_path / "root"),
                        "--state", str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and (extra[-1:] or [str(listen)])[0] in r.stderr, r.stderr
