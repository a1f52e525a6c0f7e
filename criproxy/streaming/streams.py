"""What exec and attach see of a client connection, whatever carries it (WebSocket or SPDY).

A transport fills ``stdin`` (``None`` marks EOF) and ``resizes`` from what the client sends, sets
``gone`` when the client disconnects, and implements ``write`` (stdout/stderr) and ``finish`` (the
final status on the error stream, then close). The queues are bounded so a process that does not read
its stdin stops the transport from reading the socket, which pushes back on the client through TCP
instead of buffering without limit.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from typing import Any

from criproxy.streaming.protocol import put_eof

STDIN_QUEUE = 64
STDIN_PIECE = 64 * 1024     # queued pieces are at most this big, so the queue holds at most 4 MiB


@dataclass(frozen=True)
class Options:
    """Which streams the stored CRI request asked for."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class Streams(abc.ABC):
    """Base of the transports; see the module docstring for the contract."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue(STDIN_QUEUE)
        self.resizes: asyncio.Queue[tuple[int, int]] = asyncio.Queue(16)
        self.gone = asyncio.Event()
        self._stdin_done = False

    @abc.abstractmethod
    async def write(self, channel: int, data: bytes) -> None:
        """Send ``data`` on a remote-command channel (1 stdout, 2 stderr)."""

    @abc.abstractmethod
    async def finish(self, status: dict[str, Any]) -> None:
        """Send the final status (exit code or error) and close the session."""

    # -- helpers for transports ---------------------------------------------------------------------
    async def feed_stdin(self, data: bytes) -> None:
        """Queue client stdin in pieces: a 16 MiB message must not count as one of STDIN_QUEUE items."""
        for i in range(0, len(data), STDIN_PIECE):
            if not self.opts.stdin or self._stdin_done:
                return
            await self.stdin.put(data[i:i + STDIN_PIECE])

    async def end_stdin(self) -> None:
        """The client half-closed stdin: EOF after everything it sent before (so this may wait)."""
        if not self._stdin_done:
            self._stdin_done = True
            await self.stdin.put(None)

    def feed_resize(self, size: tuple[int, int]) -> None:
        """Keep only the newest sizes when the process side lags: an old size is worthless."""
        if self.resizes.full():
            self.resizes.get_nowait()
        self.resizes.put_nowait(size)

    def lost(self) -> None:
        """The client disconnected: EOF on stdin at once, dropping input nobody will wait for."""
        self.gone.set()
        self._stdin_done = True
        put_eof(self.stdin)
