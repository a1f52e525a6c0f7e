"""SIGKILL of criproxy in the middle of ExecSync, Exec, CreateContainer: after the restart nothing
is left behind — no exec process in the container, no FIFO dir, no creation lease, no snapshot.

The kill points are found by watching from outside (the exec's FIFO dir appearing, the exec process
showing in the container, containerd's lease or snapshot list), never by hooks in criproxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.integration.images.conftest import run_gc
from tests.integration.streaming import wsclient

from .conftest import Pod, pod_config, wait_for

NS = "criproxy-crashleak"


@pytest.fixture
def crashable(criproxy_factory: CriproxyFactory, testenv: Environment) -> Iterator[tuple[CriproxyProcess, Pod]]:
    """A criproxy of its own (killed by the test) with busybox and one running pod."""
    proc = criproxy_factory(namespace=NS)
    client = proc.client()
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=120)
    pod = Pod(client, pod_config(testenv.scratch_dir("logs"), "crash"), testenv.busybox_image)
    try:
        yield proc, pod
    finally:
        with contextlib.suppress(Exception):
            proc.ensure_running()
            _reconnect(pod)
            pod.cleanup()
        client.close()


def _reconnect(pod: Pod) -> None:
    """A fresh channel to the restarted criproxy (the pod's stub must not outlive the old one)."""
    pod.client.reconnect()
    pod.rt = pod.client.runtime


def _pids(testenv: Environment, cid: str) -> list[str]:
    """Every process in the container (``ctr task ps``: its cgroup), exec processes included."""
    out = testenv.ctr("tasks", "ps", cid, namespace=NS)
    return sorted(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def _pod_state(pod: Pod) -> int:
    return int(pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status.state)


def _cmdlines(pids: list[str]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
        except OSError:
            out.append("?")
    return out


def _exec_dirs(proc: CriproxyProcess, cid: str) -> list[str]:
    d = proc.state / "containers" / cid / "exec"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _leases(testenv: Environment) -> list[str]:
    return sorted(line.split()[0] for line in testenv.ctr("leases", "ls", namespace=NS).splitlines()[1:]
                  if line.strip() and line.startswith("criproxy-"))


def _snapshots(testenv: Environment) -> list[str]:
    return sorted(line.split()[0] for line in testenv.ctr("snapshots", "ls", namespace=NS).splitlines()[1:]
                  if line.strip())


def _kill_when(proc: CriproxyProcess, call: Callable[[], object], point: Callable[[], bool], what: str) -> None:
    """Run ``call`` in a thread, SIGKILL criproxy as soon as ``point()`` holds, then restart it."""
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(call)
        wait_for(lambda: point() or fut.done(), timeout=30, interval=0.002, what=what)
        reached = not fut.done()
        proc.kill()
        with contextlib.suppress(grpc.RpcError, OSError, ConnectionError):
            fut.result(timeout=30)
    proc.start()
    if not reached:       # the call won the race: the test still checks the finished call's leftovers
        print(f"{what}: the call finished before the kill")


@pytest.mark.parametrize("point", ["fifo-dir", "process-running"])
def test_sigkill_during_exec_sync_leaves_no_process_or_fifo(
        point: str, crashable: tuple[CriproxyProcess, Pod], testenv: Environment) -> None:
    proc, pod = crashable
    cid = pod.run(command=["sleep", "3600"])
    base = _pids(testenv, cid)
    probe = cri.ExecSyncRequest(container_id=cid, cmd=["sleep", "3333"], timeout=0)
    checks: dict[str, Callable[[], bool]] = {
        "fifo-dir": lambda: bool(_exec_dirs(proc, cid)),
        "process-running": lambda: len(_pids(testenv, cid)) > len(base),
    }
    _kill_when(proc, lambda: pod.rt.ExecSync(probe, timeout=60), checks[point], f"ExecSync to reach {point}")
    _reconnect(pod)
    wait_for(lambda: _pids(testenv, cid) == base and not _exec_dirs(proc, cid), timeout=30,
             what=f"exec reaped: processes {_cmdlines(_pids(testenv, cid))} vs {_cmdlines(base)}, "
                  f"dirs {_exec_dirs(proc, cid)}")
    assert pod.status(cid).state == cri.CONTAINER_RUNNING
    assert _pod_state(pod) == cri.SANDBOX_READY      # the shim was not left wedged on the exec's FIFO
    assert pod.exec(cid, "echo", "ok").stdout == b"ok\n"          # exec still works afterwards
    wait_for(lambda: not _exec_dirs(proc, cid), timeout=10, what="the new exec's dir to go")


@pytest.mark.parametrize("point", ["fifo-dir", "output-seen"])
def test_sigkill_during_streamed_exec_leaves_no_process_or_fifo(
        point: str, crashable: tuple[CriproxyProcess, Pod], testenv: Environment) -> None:
    import asyncio

    proc, pod = crashable
    cid = pod.run(command=["sleep", "3600"])
    base = _pids(testenv, cid)
    url = str(pod.rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh", "-c", "echo started; exec sleep 3222"],
                                          stdout=True, stderr=True)).url)

    async def session() -> None:
        with contextlib.suppress(Exception):        # the session ends when criproxy dies
            s = await wsclient.connect(url)
            await s.read_until(wsclient.STDOUT, b"started")
            seen.set()
            await s.read_until(wsclient.STDOUT, b"never", timeout=60)

    import threading
    seen = threading.Event()
    checks: dict[str, Callable[[], bool]] = {"fifo-dir": lambda: bool(_exec_dirs(proc, cid)),
                                             "output-seen": seen.is_set}
    _kill_when(proc, lambda: asyncio.run(session()), checks[point], f"Exec to reach {point}")
    _reconnect(pod)
    wait_for(lambda: _pids(testenv, cid) == base and not _exec_dirs(proc, cid), timeout=30,
             what=f"exec reaped: processes {_cmdlines(_pids(testenv, cid))} vs {_cmdlines(base)}, "
                  f"dirs {_exec_dirs(proc, cid)}")
    assert _pod_state(pod) == cri.SANDBOX_READY


@pytest.mark.parametrize("point", ["lease", "snapshot"])
def test_sigkill_during_create_container_leaves_no_lease_or_snapshot(
        point: str, crashable: tuple[CriproxyProcess, Pod], testenv: Environment) -> None:
    proc, pod = crashable
    pod.run(name="first", command=["sleep", "3600"])      # the pod's and image's snapshots exist
    snaps = _snapshots(testenv)
    # The snapshot point polls the overlayfs snapshot dirs (a new numbered dir per Prepare): cheaper
    # than ctr, so the few milliseconds between Prepare and Containers.Create are often caught.
    snapdir = testenv.ctrd.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    dirs = len(list(snapdir.iterdir()))
    checks: dict[str, Callable[[], bool]] = {
        "lease": lambda: bool(_leases(testenv)),
        "snapshot": lambda: len(list(snapdir.iterdir())) > dirs,
    }
    if point == "lease":          # the creation lease is made by the first CreateContainer of a process
        proc.restart()
        _reconnect(pod)
        assert _leases(testenv) == []
    cfg_name = "victim"
    _kill_when(proc, lambda: pod.create(name=cfg_name, command=["sleep", "3600"]), checks[point],
               f"CreateContainer to reach {point}")
    _reconnect(pod)
    for c in pod.rt.ListContainers(cri.ListContainersRequest()).containers:
        if c.metadata.name == cfg_name:
            pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=c.id))
    assert _leases(testenv) == []
    run_gc(testenv, NS)
    wait_for(lambda: _snapshots(testenv) == snaps, timeout=15,
             what=f"snapshots back: {_snapshots(testenv)} vs {snaps}")


def test_creation_lease_is_deleted_at_shutdown(crashable: tuple[CriproxyProcess, Pod],
                                               testenv: Environment) -> None:
    proc, pod = crashable
    pod.run(command=["sleep", "3600"])
    assert any(x.startswith("criproxy-create-") for x in _leases(testenv))
    assert proc.stop() == 0
    assert _leases(testenv) == []
