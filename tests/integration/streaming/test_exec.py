"""Exec over WebSocket against a real container: output, exit codes, stdin, tty, tokens."""

from __future__ import annotations

import time

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


async def test_failing_command_reports_its_exit_code(pod: Pod, running: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "echo oops >&2; exit 3"))
    assert res.stderr == b"oops\n"
    st = res.status
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert res.exit_code == 3


async def test_unknown_binary_is_an_internal_error(pod: Pod, running: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "/no/such/binary"))
    st = res.status
    assert st["status"] == "Failure" and st["reason"] == "InternalError" and st["code"] == 500
    assert "/no/such/binary" in st["message"]


async def test_stdin_round_trip_through_cat(pod: Pod, running: str) -> None:
    data = b"".join(b"line %d\n" % i for i in range(20000))       # more than a pipe holds
    res = await wsclient.run(exec_url(pod, running, "cat", stdin=True), stdin=data)
    assert res.stdout == data and res.exit_code == 0


async def test_stdin_eof_after_many_small_messages_loses_nothing(pod: Pod, running: str) -> None:
    """A v5 close frame right behind more input than the server queues: EOF comes after all of it."""
    chunks = [b"%05d" % i + b"x" * 4091 for i in range(300)]
    s = await wsclient.connect(exec_url(pod, running, "sh", "-c", "wc -c", stdin=True))
    try:
        for chunk in chunks:
            await s.send(wsclient.STDIN, chunk)
        await s.close_stdin()
        res = await s.read_all()
    finally:
        await s.close()
    assert res.stdout.strip() == str(300 * 4096).encode() and res.exit_code == 0


async def test_stdin_eof_reaches_the_process(pod: Pod, running: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "wc -c; echo done", stdin=True), stdin=b"12345")
    assert res.stdout.split() == [b"5", b"done"] and res.exit_code == 0


async def _size_shows(s: wsclient.Session, size: bytes) -> None:
    """Ask the shell loop for ``stty size`` until the resize has reached the terminal."""
    for _ in range(100):
        await s.send(wsclient.STDIN, b"\r")
        try:
            await s.read_until(wsclient.STDOUT, b"size=" + size, timeout=0.2)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"terminal never became {size!r}: {s.result.stdout!r}")


async def test_tty_and_resize(pod: Pod, running: str) -> None:
    script = 'echo "$TERM $(tty)"; while read x; do [ "$x" = q ] && exit 5; echo "size=$(stty size)"; done'
    s = await wsclient.connect(exec_url(pod, running, "sh", "-c", script, stdin=True, tty=True))
    try:
        await s.resize(100, 30)
        await _size_shows(s, b"30 100")
        await s.resize(132, 43)
        await _size_shows(s, b"43 132")
        await s.send(wsclient.STDIN, b"q\r")
        res = await s.read_all()
    finally:
        await s.close()
    assert b"xterm /dev/pts/" in res.stdout
    assert res.stderr == b"" and res.exit_code == 5


async def test_exec_without_stdout_still_reports_status(pod: Pod, running: str) -> None:
    resp = pod.rt.Exec(cri.ExecRequest(container_id=running, cmd=["sh", "-c", "exit 4"], stderr=True))
    res = await wsclient.run(str(resp.url))
    assert res.frames[0] == (wsclient.STDERR, b"")          # the "streams are ready" frame
    assert res.exit_code == 4


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
async def test_v4_protocols(pod: Pod, running: str, protocol: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "echo a; exit 2"), protocols=(protocol,))
    assert res.protocol == protocol and res.stdout == b"a\n" and res.exit_code == 2


async def test_v1_protocol_sends_plain_text_errors(pod: Pod, running: str) -> None:
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "exit 2"), protocols=("channel.k8s.io",))
    assert res.protocol == "channel.k8s.io"
    assert res.error.startswith(b"command terminated with non-zero exit code") and b"exit code 2" in res.error
    ok = await wsclient.run(exec_url(pod, running, "true"), protocols=("channel.k8s.io",))
    assert ok.error == b""


async def test_client_leaving_kills_the_process(pod: Pod, running: str) -> None:
    s = await wsclient.connect(exec_url(pod, running, "sh", "-c", "echo started; exec sleep 3111"))
    await s.read_until(wsclient.STDOUT, b"started")
    await s.close()
    from tests.integration.containers.conftest import wait_for
    wait_for(lambda: "sleep 3111" not in pod.sh(running, "ps -o args"), timeout=10, what="exec process to die")


async def test_token_is_single_use(pod: Pod, running: str) -> None:
    url = exec_url(pod, running, "true")
    assert (await wsclient.run(url)).exit_code == 0
    import aiohttp
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await wsclient.run(url)
    assert e.value.status == 404


async def test_unknown_token_is_404(pod: Pod, running: str) -> None:
    import aiohttp
    url = exec_url(pod, running, "true")
    base = url.rsplit("/", 1)[0]
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await wsclient.run(base + "/notatoken")
    assert e.value.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:     # an exec token on the attach path
        await wsclient.run(url.replace("/exec/", "/attach/"))
    assert e.value.status == 404


def test_exec_request_validation(pod: Pod, running: str) -> None:
    def code(**kw: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as e:
            pod.rt.Exec(cri.ExecRequest(**kw))                  # type: ignore[arg-type]
        return e.value.code()  # type: ignore[no-any-return]

    assert code(container_id="doesnotexist", cmd=["true"], stdout=True) == grpc.StatusCode.NOT_FOUND
    assert code(container_id=running, cmd=["true"], tty=True, stdout=True, stderr=True) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(container_id=running, cmd=["true"]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(container_id=running, cmd=[], stdout=True) == grpc.StatusCode.INVALID_ARGUMENT
    stopped = pod.run(name="stopped", command=["true"])
    pod.wait_exit(stopped)
    assert code(container_id=stopped, cmd=["true"], stdout=True) == grpc.StatusCode.FAILED_PRECONDITION


async def test_tty_starts_at_the_clients_size(pod: Pod, running: str) -> None:
    """The first resize (sent right after connecting, as kubectl does) becomes the exec's console size."""
    for _ in range(3):
        s = await wsclient.connect(exec_url(pod, running, "stty", "size", stdin=True, tty=True))
        try:
            await s.resize(111, 22)
            res = await s.read_all()
        finally:
            await s.close()
        assert res.stdout == b"22 111\r\n" and res.exit_code == 0


async def test_container_gone_between_rpc_and_connect(pod: Pod) -> None:
    cid = pod.run(command=SLEEPER)
    url = exec_url(pod, cid, "true")
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
    st = (await wsclient.run(url)).status
    assert st["reason"] == "InternalError" and "not running" in st["message"]


async def test_background_child_holding_stdout_does_not_hold_the_session(pod: Pod, running: str) -> None:
    started = time.monotonic()
    res = await wsclient.run(exec_url(pod, running, "sh", "-c", "sleep 30 & echo started"))
    assert res.stdout == b"started\n" and res.exit_code == 0
    assert time.monotonic() - started < 8
