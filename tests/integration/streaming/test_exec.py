"""Exec over WebSocket against a real container: output, exit codes, stdin, tty, tokens."""

from __future__ import annotations

import grpc
import pytest

from criproxy.protos import cri
from tests.integration.containers.conftest import Pod
from tests.integration.streaming import wsclient

SLEEPER = ["sleep", "3600"]


@pytest.fixture
def running(pod: Pod) -> str:
    return pod.run(command=SLEEPER)


def exec_url(pod: Pod, cid: str, *cmd: str, stdin: bool = False, tty: bool = False, stderr: bool = True) -> str:
    resp = pod.rt.Exec(cri.ExecRequest(container_id=cid, cmd=list(cmd), stdin=stdin, stdout=True,
                                       stderr=stderr and not tty, tty=tty))
    return str(resp.url)


async def test_exec_echo_returns_stdout_and_success(pod: Pod, running: str) -> None:
    url = exec_url(pod, running, "echo", "hi")
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    res = await wsclient.run(url)
    assert res.protocol == "v5.channel.k8s.io"
    assert res.stdout == b"hi\n" and res.stderr == b""
    assert res.status == {"metadata": {}, "status": "Success"} and res.exit_code == 0
