"""A real kubectl (client-go, spdystream, gorilla/websocket) against criproxy's streaming server.

kubectl needs an API server; ``fakeapi.py`` plays one that makes the CRI call and splices the
connection to the URL criproxy returned, as the API server and kubelet do together. Skipped where no
kubectl is installed.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import pty
import shutil
import struct
import subprocess
import termios
from collections.abc import Callable

import pytest

from criproxy.protos import cri
from tests.harness.containerd import TESTENV_DIR
from tests.harness.proc import free_port, http_get
from tests.integration.containers.conftest import Pod
from tests.integration.streaming.fakeapi import FakeApiServer
from tests.integration.streaming.test_attach import TICKER
from tests.integration.streaming.test_exec import SLEEPER
from tests.integration.streaming.test_portforward import serving_pod

# The kubectl scripts/install-test-deps.sh unpacked from Debian (so a fresh machine runs these tests),
# else the newest one installed (google-cloud-cli ships kubectl.1.NN beside a dispatcher); another one
# can be tried with CRIPROXY_TEST_KUBECTL=/path/to/kubectl.
_FETCHED = TESTENV_DIR / "kubectl" / "usr" / "bin" / "kubectl"
KUBECTL = os.environ.get("CRIPROXY_TEST_KUBECTL") or (str(_FETCHED) if _FETCHED.is_file() else None) or next(
    (p for p in (shutil.which(f"kubectl.1.{v}") for v in range(40, 26, -1)) if p), None) or shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
TRANSPORTS = {"websocket": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"},
              "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}}
METHOD = {"websocket": "GET", "spdy": "POST"}     # one upgrade each: kubectl did not fall back


@functools.cache
def kubectl_minor() -> int:
    """kubectl's minor version: exec over WebSocket exists from 1.30 (older ones use SPDY whatever asked)."""
    out = subprocess.run([str(KUBECTL), "version", "--client", "-o", "json"], capture_output=True, text=True,
                         timeout=30, env={"HOME": "/nonexistent", "KUBECONFIG": "/dev/null"}).stdout
    return int("".join(ch for ch in json.loads(out)["clientVersion"]["minor"] if ch.isdigit()))


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "websocket" and kubectl_minor() < 30:
        pytest.skip("this kubectl has no WebSocket exec")
    return str(request.param)


def upgrades(api: FakeApiServer, kind: str) -> list[str]:
    return [r.split(" ", 1)[0] for r in api.requests if f"/{kind}?" in r or r.endswith(f"/{kind}")]


def cri_urls(pod: Pod, cid: str) -> Callable[[str, dict[str, list[str]]], str]:
    """What kubelet would ask the runtime for, from kubectl's query string."""
    def flag(q: dict[str, list[str]], name: str) -> bool:
        return q.get(name, ["false"])[0] in ("true", "1")

    def url_for(kind: str, q: dict[str, list[str]]) -> str:
        if kind == "portforward":
            return str(pod.rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod.id)).url)
        streams = {n: flag(q, n) for n in ("stdin", "stdout", "stderr", "tty")}
        if kind == "exec":
            return str(pod.rt.Exec(cri.ExecRequest(container_id=cid, cmd=q["command"], **streams)).url)
        return str(pod.rt.Attach(cri.AttachRequest(container_id=cid, **streams)).url)
    return url_for


async def kubectl(api: FakeApiServer, *args: str, env: dict[str, str], stdin: bytes | None = None,
                  timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--server", api.address, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "KUBECONFIG": "/dev/null", **env})
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_kubectl_exec_output_and_exit_code(pod: Pod, transport: str) -> None:
    cid = pod.run(command=SLEEPER)
    async with FakeApiServer("p", "c", cri_urls(pod, cid)) as api:
        code, out, err = await kubectl(api, "exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                                       env=TRANSPORTS[transport])
    assert (code, out) == (3, b"out\n"), err
    assert b"err\n" in err and b"command terminated with exit code 3" in err
    assert upgrades(api, "exec") == [METHOD[transport]]


async def test_kubectl_exec_stdin(pod: Pod, transport: str) -> None:
    cid = pod.run(command=SLEEPER)
    data = b"".join(b"%d\n" % i for i in range(50000))
    async with FakeApiServer("p", "c", cri_urls(pod, cid)) as api:
        code, out, err = await kubectl(api, "exec", "-i", "p", "--", "sh", "-c", "cat; echo done",
                                       env=TRANSPORTS[transport], stdin=data)
    assert code == 0, err
    assert out == data + b"done\n"
    assert upgrades(api, "exec") == [METHOD[transport]]


async def test_kubectl_port_forward_over_spdy(pod: Pod) -> None:
    await serving_pod(pod)
    local = free_port()
    async with FakeApiServer("p", "c", cri_urls(pod, "")) as api:
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--server", api.address, "port-forward", "--address", "127.0.0.1", "pod/p",
            f"{local}:8080", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "KUBECONFIG": "/dev/null",
                 "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"Forwarding from 127.0.0.1" in line
            for _ in range(3):                           # several connections over one SPDY session
                body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{local}/")
                assert body == b"hello-from-pod\n"
        finally:
            proc.terminate()
            await proc.wait()
    assert upgrades(api, "portforward") == ["POST"]


async def test_kubectl_attach_sees_output(pod: Pod, transport: str) -> None:
    cid = pod.run(command=TICKER)
    async with FakeApiServer("p", "c", cri_urls(pod, cid)) as api:
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--server", api.address, "attach", "p", "-c", "c",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "KUBECONFIG": "/dev/null",
                 **TRANSPORTS[transport]})
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.startswith(b"tick")
        finally:
            proc.terminate()
            await proc.wait()
    assert upgrades(api, "attach") == [METHOD[transport]]


async def test_kubectl_exec_tty_takes_the_terminal_size(pod: Pod, transport: str) -> None:
    """kubectl on a real pseudo-terminal of 33x99: the shell inside sees that size (resize channel/stream)."""
    cid = pod.run(command=SLEEPER)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    async with FakeApiServer("p", "c", cri_urls(pod, cid)) as api:
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--server", api.address, "exec", "-it", "p", "--", "sh", "-c", TTY_SCRIPT,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "KUBECONFIG": "/dev/null",
                 "TERM": "xterm", **TRANSPORTS[transport]})
        os.close(slave)
        output = await asyncio.to_thread(_read_pty, master)
        code = await asyncio.wait_for(proc.wait(), 30)
    os.close(master)
    assert b"33 99" in output, output
    assert code == 6, output
    assert upgrades(api, "exec") == [METHOD[transport]]


# The size normally holds from the start (consoleSize); a late first resize must still arrive.
TTY_SCRIPT = 'for i in 1 2 3 4 5 6 7 8 9 10; do s=$(stty size); [ "$s" = "33 99" ] && break; sleep 0.2; done; ' \
             'echo "$s"; exit 6'


def _read_pty(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:                                  # EIO: the other side closed
            return out
        if not chunk:
            return out
        out += chunk
