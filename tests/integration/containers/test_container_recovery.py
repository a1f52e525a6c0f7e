"""criproxy restarted (SIGKILL) with running, exited, created containers: all come back with state and
exit codes, log pumps re-attach and keep writing, exits that happened while it was down are seen."""

from __future__ import annotations

import json
import os
import signal
import time

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, read_log, wait_for

COUNTER = ["sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"]


def _numbers(pod: Pod, name: str) -> list[int]:
    return [int(t[4:]) for _s, _tag, t in read_log(pod.log(name))]


def test_restart_restores_containers_and_logging(pod: Pod, criproxy_proc: CriproxyProcess) -> None:
    running = pod.run(container_config(pod.image, name="run", command=COUNTER))
    exited = pod.run(container_config(pod.image, name="ex", command=["sh", "-c", "exit 3"]))
    created = pod.create(container_config(pod.image, name="cr", command=["true"]))
    later = pod.run(container_config(pod.image, name="later", command=["sleep", "2"]))
    pod.wait_exit(exited)
    wait_for(lambda: len(read_log(pod.log("run"))) >= 3, what="first log lines")
    before = {c: pod.status(c) for c in (running, exited, created)}

    criproxy_proc.kill()
    time.sleep(2.5)                       # "later" exits while criproxy is down; "run" keeps printing
    criproxy_proc.start()
    pod.client.reconnect()
    pod.rt = pod.client.runtime

    st = {c: pod.status(c) for c in (running, exited, created, later)}
    assert st[running].state == cri.CONTAINER_RUNNING, (st[running].exit_code, st[running].message, st[running].reason)
    assert st[running].started_at == before[running].started_at
    assert (st[exited].state, st[exited].exit_code, st[exited].reason) == (cri.CONTAINER_EXITED, 3, "Error")
    assert st[exited].finished_at == before[exited].finished_at
    assert st[created].state == cri.CONTAINER_CREATED
    assert (st[later].state, st[later].exit_code, st[later].reason) == (cri.CONTAINER_EXITED, 0, "Completed")
    listed = {c.id for c in pod.rt.ListContainers(cri.ListContainersRequest()).containers}
    assert {running, exited, created, later} <= listed

    # the pump re-attached: numbering continues without a gap, including what was printed meanwhile
    n = len(_numbers(pod, "run"))
    wait_for(lambda: len(_numbers(pod, "run")) > n + 5, what="logging after restart")
    nums = _numbers(pod, "run")
    assert nums == list(range(nums[0], nums[0] + len(nums)))
    assert pod.exec(running, "true").exit_code == 0

    pod.rt.StopContainer(cri.StopContainerRequest(container_id=running, timeout=0))
    assert pod.status(running).state == cri.CONTAINER_EXITED
    pod.rt.StartContainer(cri.StartContainerRequest(container_id=created))
    assert pod.wait_exit(created).reason == "Completed"


def test_containerd_restart_keeps_containers_and_sees_later_exits(pod: Pod, testenv: Environment) -> None:
    cid = pod.run(container_config(pod.image, name="run", command=COUNTER))
    testenv.ctrd.restart()
    assert pod.status(cid).state == cri.CONTAINER_RUNNING
    n = len(read_log(pod.log("run")))
    wait_for(lambda: len(read_log(pod.log("run"))) > n + 3, what="logging across the containerd restart")
    info = pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True), timeout=30).info
    os.kill(int(json.loads(info["info"])["pid"]), signal.SIGKILL)   # the exit must still be noticed
    st = pod.wait_exit(cid, timeout=30)
    assert (st.exit_code, st.reason) == (137, "Error")


def test_graceful_restart_keeps_a_half_line_as_partial(pod: Pod, criproxy_proc: CriproxyProcess) -> None:
    cid = pod.run(container_config(pod.image, name="half", command=[
        "sh", "-c", "printf first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second; sleep 1000"]))
    time.sleep(0.5)
    criproxy_proc.restart()
    pod.client.reconnect()
    pod.rt = pod.client.runtime
    pod.sh(cid, "mkdir -p /tmp && touch /tmp/go")
    recs = wait_for(lambda: len(r := read_log(pod.log("half"))) >= 2 and r, what="both halves")
    assert recs == [("stdout", "P", "first"), ("stdout", "F", "second")]
