"""ExecSync (output, exit code, caps, timeout, background children) and ReopenContainerLog."""

from __future__ import annotations

import time

import grpc
import pytest

from criproxy.protos import cri
from criproxy.protos import cri_grpc as api_pb2_grpc
from tests.integration.containers.conftest import Pod, read_log, wait_for


@pytest.fixture
def running(pod: Pod) -> str:
    return pod.run(command=["sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"])


def test_exec_output_and_exit_code(pod: Pod, running: str) -> None:
    resp = pod.exec(running, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (resp.stdout, resp.stderr, resp.exit_code) == (b"out\n", b"err\n", 7)
    assert pod.exec(running, "true").exit_code == 0


def test_exec_big_output_is_capped_at_16mib(pod: Pod, running: str) -> None:
    opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    with grpc.insecure_channel(f"unix://{pod.client.socket}", options=opts) as ch:
        stub = api_pb2_grpc.RuntimeServiceStub(ch)
        resp = stub.ExecSync(cri.ExecSyncRequest(container_id=running, cmd=["sh", "-c", "head -c 17000000 /dev/zero"],
                                                 timeout=60), timeout=90)
    # 16 MiB each, less the little room the reply needs to fit gRPC's 16 MiB message limit
    assert resp.exit_code == 0 and 16 * 1024 * 1024 - 1024 <= len(resp.stdout) < 16 * 1024 * 1024


def test_exec_timeout_is_deadline_exceeded(pod: Pod, running: str) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        pod.exec(running, "sleep", "100", timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10
    assert "sleep 100" not in pod.sh(running, "ps")


def test_exec_abandoned_by_caller_is_killed(pod: Pod, running: str) -> None:
    """The caller's deadline passes before the command ends (no CRI timeout): the command must not
    keep running in the container once the call is gone."""
    with pytest.raises(grpc.RpcError) as e:
        pod.rt.ExecSync(cri.ExecSyncRequest(container_id=running, cmd=["sleep", "313"]), timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: "sleep 313" not in pod.sh(running, "ps -o args"), timeout=10,
             what="the abandoned exec to be killed")


def test_background_child_holding_stdout_does_not_hang(pod: Pod, running: str) -> None:
    started = time.monotonic()
    resp = pod.exec(running, "sh", "-c", "sleep 30 & echo started", timeout=20)
    assert resp.exit_code == 0 and resp.stdout == b"started\n"
    assert time.monotonic() - started < 8


def test_exec_in_stopped_container_fails(pod: Pod) -> None:
    cid = pod.run(command=["true"])
    pod.wait_exit(cid)
    with pytest.raises(grpc.RpcError) as e:
        pod.exec(cid, "true")
    assert e.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


def test_reopen_log_after_rename(pod: Pod, running: str) -> None:
    log = pod.log()
    wait_for(lambda: len(read_log(log)) >= 2, what="first lines")
    rotated = log.with_name("0.log.20260101")
    log.rename(rotated)
    pod.rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=running))
    new = wait_for(lambda: log.exists() and len(read_log(log)) >= 2 and read_log(log), what="new log file")
    old = read_log(rotated)
    n_old, n_new = int(old[-1][2][4:]), int(new[0][2][4:])
    assert n_new == n_old + 1                    # nothing lost or duplicated across the switch
    assert all(s == "stdout" and t == "F" for s, t, _ in new)


def test_reopen_log_of_exited_container_fails(pod: Pod) -> None:
    cid = pod.run(command=["true"])
    pod.wait_exit(cid)
    with pytest.raises(grpc.RpcError) as e:
        pod.rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=cid))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
