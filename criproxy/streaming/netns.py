"""Open a TCP socket inside a pod's network namespace without moving criproxy there.

A socket belongs to the network namespace it was created in, for its whole life, whichever thread
uses it later. So a short-lived dedicated thread (never a pooled one) joins the pod's namespace with
setns(2), creates the socket, returns to the original namespace and ends; the event loop then
connects and uses the socket as any other. Namespaces are per thread, so the rest of the process
never leaves its own; should the way back fail, the thread ends anyway and takes the foreign
namespace with it. Python 3.11 has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading

from criproxy.network.netns import setns_net


def _socket_in(netns_path: str, family: int) -> socket.socket:
    """Runs in its own thread: a new TCP socket of ``family`` made inside ``netns_path``."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns_net(target)
        finally:
            os.close(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            setns_net(own)
    finally:
        os.close(own)


async def socket_in_netns(netns_path: str, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking TCP socket created in the network namespace at ``netns_path``."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[socket.socket] = loop.create_future()

    def deliver(sock: socket.socket | None, err: BaseException | None) -> None:
        if fut.cancelled():
            if sock is not None:
                sock.close()
        elif err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(sock)     # type: ignore[arg-type]

    def work() -> None:
        try:
            sock = _socket_in(netns_path, family)
        except BaseException as e:
            loop.call_soon_threadsafe(deliver, None, e)
        else:
            loop.call_soon_threadsafe(deliver, sock, None)

    threading.Thread(target=work, name="netns-socket", daemon=True).start()
    sock = await fut
    sock.setblocking(False)
    return sock


async def connect_local(netns_path: str, port: int,
                        timeout: float = 10.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``localhost:port`` as seen inside the namespace (IPv4, then IPv6); the host's own
    namespace when ``netns_path`` is empty (host-network pods)."""
    loop = asyncio.get_running_loop()
    first: OSError | None = None
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = await socket_in_netns(netns_path, family) if netns_path else _plain(family)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except (OSError, TimeoutError) as e:
            sock.close()
            why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else "timed out"
            first = first or OSError(f"dial tcp {host}:{port}: connect: {why.lower()}")
            continue
        return await asyncio.open_connection(sock=sock)
    assert first is not None
    raise first


def _plain(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock
