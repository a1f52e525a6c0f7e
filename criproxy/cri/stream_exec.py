"""Exec: validate, then hand out a single-use URL on the streaming server (kubelet's contract).

The command runs only when the client connects (``criproxy/streaming/exec.py``). Validation is
kubelet's own streaming server's (``validateExecRequest``) plus the container having to be running.
"""

from __future__ import annotations

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.streaming import new_url
from criproxy.streaming.exec import running_container


def check_streams(request: cri.ExecRequest | cri.AttachRequest) -> None:
    """tty multiplexes stdout and stderr into one stream, and some stream must be wanted."""
    if not request.container_id:
        raise errors.InvalidArgument("missing required container_id")
    if request.tty and request.stderr:
        raise errors.InvalidArgument("tty and stderr cannot both be true")
    if not (request.stdin or request.stdout or request.stderr):
        raise errors.InvalidArgument("one of stdin, stdout, or stderr must be set")


@rpc("Exec")
async def exec_(app: App, request: cri.ExecRequest) -> cri.ExecResponse:
    check_streams(request)
    if not request.cmd:
        raise errors.InvalidArgument("exec command is empty")
    rec = running_container(app, request.container_id)
    stored = cri.ExecRequest()
    stored.CopyFrom(request)
    stored.container_id = rec.id
    return cri.ExecResponse(url=await new_url(app, "exec", stored))
