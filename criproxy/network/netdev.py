"""Read pods' /proc/net/dev from inside their network namespaces, without moving criproxy there.

/proc/net/dev shows the namespace of the task that reads it (through ``/proc/thread-self``, not
``/proc/self``, which is the main thread's). So one short-lived dedicated thread (never a pooled one)
joins each pinned namespace in turn with setns(2), reads the file, and goes back to its own namespace;
should the way back fail, the thread ends and takes the foreign namespace with it. One thread serves a
whole list of pods, so a ListPodSandboxStats of many pods costs one thread, not one each. Reading the
pinned namespace (not ``/proc/<pause pid>/net/dev``) works whatever happens to the pause process.
"""

from __future__ import annotations

import asyncio
import os
import threading

from criproxy.network.netns import setns_net

NET_DEV = "/proc/thread-self/net/dev"


def _enter(path: str) -> bool:
    """Join the namespace pinned at ``path``; False (and still home) when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        setns_net(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def read_all_sync(paths: list[str]) -> dict[str, str]:
    """Runs in its own thread: /proc/net/dev text per namespace path (paths that fail are left out)."""
    out: dict[str, str] = {}
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for path in paths:
            if not _enter(path):
                continue
            try:
                with open(NET_DEV, encoding="ascii") as f:
                    out[path] = f.read()
            except OSError:
                pass
            finally:
                setns_net(own)
    finally:
        os.close(own)
    return out


async def read_net_dev(paths: list[str]) -> dict[str, str]:
    """/proc/net/dev text as seen in each network namespace of ``paths``, off the event loop."""
    if not paths:
        return {}
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[dict[str, str]] = loop.create_future()

    def settle(res: dict[str, str] | None, err: BaseException | None) -> None:
        if fut.done():
            return
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(res or {})

    def work() -> None:
        try:
            res = read_all_sync(paths)
        except BaseException as e:
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, res, None)

    threading.Thread(target=work, name="netns-netdev", daemon=True).start()
    return await fut
