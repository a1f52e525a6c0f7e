"""The Kubernetes remote-command and port-forward wire vocabulary, without any I/O.

Remote command (exec, attach) multiplexes numbered streams over one connection: 0 stdin, 1 stdout,
2 stderr, 3 error (the final status), 4 resize (a stream of ``{"Width": w, "Height": h}`` JSON
objects). Protocol versions differ only in details a server must get right:

- ``channel.k8s.io`` (v1, also what a client that names no protocol gets) and ``v2``/``v3``: the
  error stream carries the failure message as plain text, nothing on success;
- ``v4.channel.k8s.io``: the error stream carries a JSON ``metav1.Status``, the exit code of a failed
  command in ``details.causes[reason=ExitCode].message`` (kubectl prints "command terminated with
  exit code N" from it);
- ``v5.channel.k8s.io`` (WebSocket only): the client may half-close a stream with a frame
  ``[255, channel]``, which is how stdin reaches EOF over WebSocket.

``base64.`` variants send text frames: the channel as an ASCII digit, the payload base64-encoded.
Port-forward over WebSocket pairs a data and an error channel per port (2i, 2i+1); the first frame
on each carries the port as uint16 little-endian.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
MAX_MESSAGE = 16 * 1024 * 1024      # a client WebSocket message (kubectl sends stdin in 32 KiB pieces)

# In the order kubelet prefers them; the client's own order decides (first it offers that we serve).
WS_REMOTECOMMAND = ("v5.channel.k8s.io", "v5.base64.channel.k8s.io", "v4.channel.k8s.io",
                    "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io")
WS_PORTFORWARD = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                  "base64.channel.k8s.io", "portforward.k8s.io")
SPDY_REMOTECOMMAND = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                      "channel.k8s.io")
SPDY_PORTFORWARD = ("portforward.k8s.io",)


@dataclass(frozen=True)
class Dialect:
    """What a negotiated remote-command protocol implies for the server."""

    name: str
    version: int          # 1..5 ("channel.k8s.io" is 1)
    base64: bool = False

    @property
    def json_status(self) -> bool:
        return self.version >= 4

    @property
    def close_frames(self) -> bool:
        return self.version >= 5


def dialect(protocol: str | None) -> Dialect:
    """The dialect of a negotiated protocol name ("" or None: the unversioned binary protocol)."""
    name = protocol or ""
    rest = name
    version = 1
    if rest[:1] == "v" and "." in rest and rest[1:rest.index(".")].isdigit():
        version = int(rest[1:rest.index(".")])
        rest = rest[rest.index(".") + 1:]
    return Dialect(name, version, base64=rest.startswith("base64."))


def choose(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The client's first offered protocol that we serve (Go's wsstream and httpstream do the same);
    "" when the client offered none; None when nothing matches."""
    if not offered:
        return ""
    for proto in offered:
        if proto in supported:
            return proto
    return None


def split_header(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


# -- the final status on the error stream -------------------------------------------------------------
def status_success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def status_exit_code(cmd: list[str], code: int) -> dict[str, Any]:
    """A command that ran and exited non-zero (kubelet's NonZeroExitCode status)."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {_go_list(cmd)}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def status_internal(message: str) -> dict[str, Any]:
    """Anything else that went wrong (apierrors.NewInternalError)."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def encode_status(status: dict[str, Any], d: Dialect) -> bytes | None:
    """What goes on the error stream for this dialect; None when nothing should be sent."""
    if d.json_status:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


# -- resize events ------------------------------------------------------------------------------------
MAX_RESIZE_MESSAGE = 4096       # {"Width":80,"Height":24} is 24 bytes
MAX_RESIZE_NESTING = 16


class ProtocolError(ValueError):
    """The client sent something the protocol does not allow (the session may go on without it)."""


class ResizeDecoder:
    """Terminal sizes from a byte stream of concatenated JSON objects, however it was cut into frames.

    Each object is decoded from at most MAX_RESIZE_MESSAGE characters and after a nesting check, so
    neither a huge nor a deeply nested message reaches the JSON parser's recursion: either is a
    ``ProtocolError``, after which the caller stops reading resizes (as kubelet does on a decode error).
    """

    def __init__(self) -> None:
        self._buf = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        """Complete (width, height) pairs found so far; well-formed objects that are not sizes are skipped."""
        self._buf += data.decode("utf-8", "replace")
        out: list[tuple[int, int]] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            window = text[:MAX_RESIZE_MESSAGE]
            if _nesting(window) > MAX_RESIZE_NESTING:
                self._buf = ""
                raise ProtocolError(f"resize message nested deeper than {MAX_RESIZE_NESTING} levels")
            try:
                obj, end = self._json.raw_decode(window)
            except json.JSONDecodeError:
                self._buf = ""
                if len(text) >= MAX_RESIZE_MESSAGE:
                    raise ProtocolError(f"resize message is not JSON within {MAX_RESIZE_MESSAGE} bytes") from None
                self._buf = text                # the rest of the object is still to come
                return out
            self._buf = text[end:]
            size = _size(obj)
            if size is not None:
                out.append(size)


def _nesting(text: str) -> int:
    """How deep ``[``/``{`` nest in ``text`` (outside strings); cheap unless there are many brackets."""
    if text.count("[") + text.count("{") <= MAX_RESIZE_NESTING:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _size(obj: Any) -> tuple[int, int] | None:
    if not isinstance(obj, dict):
        return None
    w, h = obj.get("Width", obj.get("width")), obj.get("Height", obj.get("height"))
    if not isinstance(w, int) or not isinstance(h, int) or not (0 <= w < 65536 and 0 <= h < 65536):
        return None
    return w, h


# -- frames -------------------------------------------------------------------------------------------
def encode_frame(channel: int, data: bytes, d: Dialect) -> bytes | str:
    """One WebSocket message for a channel: binary ``[channel] + data`` or base64 text."""
    if d.base64:
        import base64

        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes((channel,)) + data


def decode_frame(message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, payload) of a client message; None for an empty or undecodable one."""
    if not message:
        return None
    if isinstance(message, str):
        import base64
        import binascii

        try:
            return ord(message[0]) - ord("0"), base64.b64decode(message[1:])
        except (binascii.Error, ValueError):
            return None
    return message[0], bytes(message[1:])


def port_prefix(port: int) -> bytes:
    return int(port).to_bytes(2, "little")


def put_eof(queue: asyncio.Queue[Any]) -> None:
    """Queue EOF (None) at once, dropping the oldest data if the queue is full.

    Used when the other side is gone: whoever reads the queue must see the end now, and data
    queued before it will never be wanted, so blocking to deliver it would only hang the session.
    """
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
