"""Attach over WebSocket: joining a running container's output, stdin, stdin_once, tty resize."""

from __future__ import annotations

import grpc
import pytest

from criproxy.protos import cri
from tests.integration.containers.conftest import Pod, container_config
from tests.integration.streaming import wsclient
from tests.integration.streaming.test_exec import _size_shows

TICKER = ["sh", "-c", "i=0; while true; do echo tick$i; echo tock$i >&2; i=$((i+1)); sleep 0.1; done"]


def attach_url(pod: Pod, cid: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               tty: bool = False) -> str:
    return str(pod.rt.Attach(cri.AttachRequest(container_id=cid, stdin=stdin, stdout=stdout, stderr=stderr,
                                               tty=tty)).url)


async def test_attach_sees_output_of_running_container(pod: Pod) -> None:
    cid = pod.run(command=TICKER)
    url = attach_url(pod, cid)
    assert "/attach/" in url
    s = await wsclient.connect(url)
    try:
        await s.read_until(wsclient.STDOUT, b"tick")
        await s.read_until(wsclient.STDERR, b"tock")
    finally:
        await s.close()
    assert pod.status(cid).state == cri.CONTAINER_RUNNING      # leaving does not stop the container


async def test_attach_stdout_only(pod: Pod) -> None:
    cid = pod.run(command=TICKER)
    s = await wsclient.connect(attach_url(pod, cid, stderr=False))
    try:
        await s.read_until(wsclient.STDOUT, b"tick")
        await s.read_until(wsclient.STDOUT, b"\n", timeout=2)
    finally:
        await s.close()
    assert s.result.stderr == b""


async def test_attach_stdin_reaches_the_container(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", "while read l; do echo got:$l; done"],
                                   stdin=True))
    s = await wsclient.connect(attach_url(pod, cid, stdin=True))
    try:
        await s.send(wsclient.STDIN, b"hello\n")
        await s.read_until(wsclient.STDOUT, b"got:hello\n")
    finally:
        await s.close()
    assert pod.status(cid).state == cri.CONTAINER_RUNNING      # not stdin_once: stdin stays open
    s = await wsclient.connect(attach_url(pod, cid, stdin=True))
    try:
        await s.send(wsclient.STDIN, b"again\n")
        await s.read_until(wsclient.STDOUT, b"got:again\n")
    finally:
        await s.close()


async def test_stdin_once_container_gets_eof_and_session_ends_with_it(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", "cat; echo eof-seen"], stdin=True,
                                   stdin_once=True))
    s = await wsclient.connect(attach_url(pod, cid, stdin=True))
    try:
        await s.send(wsclient.STDIN, b"data\n")
        await s.read_until(wsclient.STDOUT, b"data\n")
        await s.close_stdin()
        res = await s.read_all()
    finally:
        await s.close()
    assert b"eof-seen" in res.stdout and res.status == {"metadata": {}, "status": "Success"}
    assert pod.wait_exit(cid).exit_code == 0


async def test_attach_tty_resize(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", 'while read x; do echo "size=$(stty size)"; done'],
                                   stdin=True, tty=True))
    s = await wsclient.connect(attach_url(pod, cid, stdin=True, stderr=False, tty=True))
    try:
        await s.resize(90, 20)
        await _size_shows(s, b"20 90")
    finally:
        await s.close()


def test_attach_validation(pod: Pod) -> None:
    def code(**kw: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as e:
            pod.rt.Attach(cri.AttachRequest(**kw))               # type: ignore[arg-type]
        return e.value.code()  # type: ignore[no-any-return]

    assert code(container_id="doesnotexist", stdout=True) == grpc.StatusCode.NOT_FOUND
    cid = pod.run(command=["true"])
    assert code(container_id=cid, tty=True, stdout=True, stderr=True) == grpc.StatusCode.INVALID_ARGUMENT
    pod.wait_exit(cid)
    assert code(container_id=cid, stdout=True) == grpc.StatusCode.FAILED_PRECONDITION


async def test_attach_ends_with_success_when_the_container_exits(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", "read x; echo bye:$x"], stdin=True))
    s = await wsclient.connect(attach_url(pod, cid, stdin=True))
    try:
        await s.send(wsclient.STDIN, b"now\n")
        res = await s.read_all()
    finally:
        await s.close()
    assert b"bye:now" in res.stdout and res.status == {"metadata": {}, "status": "Success"}
