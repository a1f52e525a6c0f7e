"""A small synchronous CRI client (grpc sync API keeps tests plain functions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from criproxy._gen.runtime.v1 import api_pb2, api_pb2_grpc


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _DefaultDeadline(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Gives unary calls without a timeout a default deadline, so a hung RPC fails instead of the run."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def intercept_unary_unary(self, continuation: Callable[[Any, Any], Any], details: Any,
                              request: Any) -> Any:
        if details.timeout is None:
            details = _CallDetails(details.method, self.timeout, details.metadata, details.credentials,
                                   getattr(details, "wait_for_ready", None),
                                   getattr(details, "compression", None))
        return continuation(details, request)


class CriClient:
    """``runtime``/``image`` stubs on one channel to a CRI unix socket (criproxy or containerd).

    ``pb`` is the CRI message module (``cri.pb.VersionRequest()``). Unary calls default to a
    ``timeout``-second deadline; streaming calls (GetContainerEvents) have none.
    """

    pb = api_pb2

    def __init__(self, socket: Path, timeout: float = 60.0) -> None:
        self.socket = socket
        self.timeout = timeout
        self._dial()

    def _dial(self) -> None:
        self.raw_channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.channel = grpc.intercept_channel(self.raw_channel, _DefaultDeadline(self.timeout))
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.image = api_pb2_grpc.ImageServiceStub(self.channel)

    def version(self, timeout: float = 5.0) -> api_pb2.VersionResponse:
        """One Version call (the readiness probe and a quick liveness check)."""
        resp: api_pb2.VersionResponse = self.runtime.Version(api_pb2.VersionRequest(), timeout=timeout)
        return resp

    def reconnect(self) -> None:
        """Drop the channel and dial again (after the server restarted, skips gRPC's backoff)."""
        self.close()
        self._dial()

    def close(self) -> None:
        self.raw_channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
