"""containerd client: one grpc.aio channel, the namespace header on every call, our error vocabulary.

Each service is reached as an attribute (``ctrd.tasks.Create(req)``). The wrapper adds the
``containerd-namespace`` header (and ``containerd-lease`` when asked), records the call into the
current CRI call's translation trace and turns ``grpc.aio.AioRpcError`` into criproxy's own errors,
so no handler ever sees a foreign exception or matches on a message.

Reconnects are grpc's own: the channel is tuned to retry quickly (100 ms to 1 s backoff), so when
containerd restarts the next call after it is back succeeds without criproxy doing anything.

Every call has a deadline: a hung shim (frozen, swapped out, stuck in D state) makes containerd's
Kill/Delete/Exec wait on it for ever, and without a deadline one such call would hold a CRI call —
and every call that joined it — until criproxy restarts. The default is the
``containerd_call_timeout`` setting; calls known to do a lot of work get the longer deadlines of
``SLOW_DEADLINES``; calls that wait for something to happen (``WAITS``: Tasks.Wait, the event
subscription) have none unless the caller gives one, since waiting is their job and their callers
bound them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
from google.protobuf import empty_pb2, timestamp_pb2

from criproxy import errors, trace
from criproxy import protos as p
from criproxy.labels import GC_EXPIRE

MAX_MESSAGE = 16 * 1024 * 1024
LEASE_EXPIRY = 24 * 3600      # seconds a lease outlives a criproxy that died holding it
Metadata = Sequence[tuple[str, str]]

DEFAULT_DEADLINE = 30.0
# (service, method) → seconds, for calls that legitimately take long: creating a task starts a
# shim and runs runc create (hooks, a slow disk); Diff.Apply unpacks a whole layer; Commit and Remove
# of snapshots walk a layer's files; a Content.Write stream carries a whole layer (the pull's
# progress watchdog catches a stalled one much sooner).
SLOW_DEADLINES: dict[tuple[str, str], float] = {
    ("Tasks", "Create"): 120.0,
    ("Tasks", "Start"): 60.0,
    ("Tasks", "Exec"): 60.0,
    ("Tasks", "Delete"): 60.0,
    ("Diff", "Apply"): 1800.0,
    ("Snapshots", "Commit"): 300.0,
    ("Snapshots", "Remove"): 300.0,
    ("Snapshots", "Usage"): 120.0,
    ("Content", "Write"): 3600.0,
    ("Transfer", "Transfer"): 3600.0,    # a whole pull and unpack inside containerd (2.x)
    ("Images", "Delete"): 120.0,
    ("Leases", "Delete"): 120.0,
}
# Calls whose job is to wait for an event: no deadline unless the caller passes one.
WAITS: frozenset[tuple[str, str]] = frozenset({("Tasks", "Wait"), ("Events", "Subscribe")})
# (Streaming.Stream lives as long as the Transfer it serves; its opener always passes a deadline.)

_CODE_TO_ERROR: dict[grpc.StatusCode, type[errors.CriError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.INTERNAL: errors.Internal,
}


def map_error(service: str, method: str, err: grpc.aio.AioRpcError) -> errors.CriError:
    """Turn a containerd status into our error class, keeping containerd's message for the user."""
    cls = _CODE_TO_ERROR.get(err.code(), errors.Unknown)
    return cls(f"containerd {service}.{method}: {err.details()}")


def _code_name(err: BaseException | None) -> str:
    if err is None:
        return "OK"
    if isinstance(err, grpc.aio.AioRpcError):
        return str(err.code().name)
    return type(err).__name__


class _Method:
    """One containerd RPC, callable as ``await m(request)`` (unary) or iterated (streaming)."""

    __slots__ = ("_client", "_method", "_service", "_stub_attr")

    def __init__(self, client: Containerd, service: str, method: str, stub_attr: Any):
        self._client, self._service, self._method = client, service, method
        self._stub_attr = stub_attr

    @property
    def deadline(self) -> float | None:
        """This method's deadline in seconds when the caller gives none (None: a wait, unbounded)."""
        return self._client.deadline_for(self._service, self._method)

    async def __call__(self, request: Any, *, timeout: float | None = None, lease: str | None = None) -> Any:
        started = time.perf_counter()
        err: BaseException | None = None
        if timeout is None:
            timeout = self.deadline
        try:
            return await self._stub_attr(request, metadata=self._client.metadata(lease), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            err = e
            raise map_error(self._service, self._method, e) from None
        finally:
            self._record(started, err, request, lease)

    def _record(self, started: float, err: BaseException | None, request: Any = None,
                lease: str | None = None) -> None:
        """One Step in the current CRI call's trace (if there is one); the request is kept by
        reference, its key arguments read only if the trace is shown (trace.key_args)."""
        tr = trace.current.get()
        if tr is not None:
            tr.record(self._service, self._method, started, _code_name(err), request, lease)

    def stream(self, request: Any = None, *, timeout: float | None = None,
               lease: str | None = None) -> grpc.aio.Call:
        """Open a streaming call (server, client or bidi) with our metadata; map errors yourself
        with ``map_error`` or iterate through ``iterate``."""
        args = () if request is None else (request,)
        if timeout is None:
            timeout = self.deadline
        call: grpc.aio.Call = self._stub_attr(*args, metadata=self._client.metadata(lease), timeout=timeout)
        return call

    async def iterate(self, request: Any, *, timeout: float | None = None,
                      lease: str | None = None) -> AsyncIterator[Any]:
        """Iterate a server stream, mapping containerd errors into ours."""
        started = time.perf_counter()
        err: BaseException | None = None
        try:
            call: Any = self.stream(request, timeout=timeout, lease=lease)
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            err = e
            raise map_error(self._service, self._method, e) from None
        finally:
            self._record(started, err, request, lease)


class _Service:
    """Attribute access to one service's methods, each wrapped once and cached."""

    def __init__(self, client: Containerd, name: str, stub: Any):
        self._client, self._name, self._stub = client, name, stub
        self._cache: dict[str, _Method] = {}

    def __getattr__(self, method: str) -> _Method:
        try:
            return self._cache[method]
        except KeyError:
            m = _Method(self._client, self._name, method, getattr(self._stub, method))
            self._cache[method] = m
            return m


_SERVICES: dict[str, tuple[Callable[[grpc.aio.Channel], Any], str]] = {
    "containers": (p.containers_grpc.ContainersStub, "Containers"),
    "content": (p.content_grpc.ContentStub, "Content"),
    "diff": (p.diff_grpc.DiffStub, "Diff"),
    "events": (p.events_grpc.EventsStub, "Events"),
    "images": (p.images_grpc.ImagesStub, "Images"),
    "introspection": (p.introspection_grpc.IntrospectionStub, "Introspection"),
    "leases": (p.leases_grpc.LeasesStub, "Leases"),
    "namespaces": (p.namespaces_grpc.NamespacesStub, "Namespaces"),
    "snapshots": (p.snapshots_grpc.SnapshotsStub, "Snapshots"),
    "streaming": (p.streaming_grpc.StreamingStub, "Streaming"),
    "tasks": (p.tasks_grpc.TasksStub, "Tasks"),
    "transfer": (p.transfer_grpc.TransferStub, "Transfer"),
    "version": (p.version_grpc.VersionStub, "Version"),
}


class Containerd:
    """The one connection criproxy keeps to containerd, scoped to one namespace."""

    containers: _Service
    content: _Service
    diff: _Service
    events: _Service
    images: _Service
    introspection: _Service
    leases: _Service
    namespaces: _Service
    snapshots: _Service
    streaming: _Service
    tasks: _Service
    transfer: _Service
    version: _Service

    def __init__(self, address: str, namespace: str, deadline: float = DEFAULT_DEADLINE):
        self.address = address
        self.namespace = namespace
        self.deadline = deadline
        target = address if address.startswith("unix:") else f"unix://{os.path.abspath(address)}"
        self.channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
        ])
        self._md: tuple[tuple[str, str], ...] = (("containerd-namespace", namespace),)
        for attr, (stub_cls, name) in _SERVICES.items():
            setattr(self, attr, _Service(self, name, stub_cls(self.channel)))

    def deadline_for(self, service: str, method: str) -> float | None:
        """The deadline of a call that was given none: None for a wait, else the default or, for a
        known-slow call, its longer one (never shorter than the default)."""
        if (service, method) in WAITS:
            return None
        return max(self.deadline, SLOW_DEADLINES.get((service, method), 0.0))

    def metadata(self, lease: str | None = None) -> Metadata:
        if lease is None:
            return self._md
        return (*self._md, ("containerd-lease", lease))

    async def close(self) -> None:
        await self.channel.close(None)

    async def server_version(self, timeout: float | None = None) -> str:
        """containerd's version string; a live call, which is what RuntimeReady is built on."""
        resp = await self.version.Version(empty_pb2.Empty(), timeout=timeout)
        return str(resp.version)

    async def new_lease(self, purpose: str, labels: dict[str, str] | None = None) -> str:
        """Create a lease expiring in 24 h (as containerd's Go client does) and return its ID.

        Objects written under it survive GC until a record that references them (image, container)
        exists; when criproxy dies before it deletes the lease, containerd collects them a day later.
        ``purpose`` names it (``criproxy-<purpose>-…``) for whoever lists leases.
        """
        lease_id = f"criproxy-{purpose}-{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"
        expire = timestamp_pb2.Timestamp()
        expire.FromSeconds(int(time.time()) + LEASE_EXPIRY)
        all_labels = {GC_EXPIRE: expire.ToJsonString(), **(labels or {})}
        await self.leases.Create(p.leases_pb.CreateRequest(id=lease_id, labels=all_labels))
        return lease_id

    async def drop_lease(self, lease_id: str) -> None:
        """Delete a lease (not synced: GC collects what only it held later); shielded from the
        caller's cancellation, and a failure only leaves it to expire."""
        with contextlib.suppress(errors.CriError):
            await asyncio.shield(self.leases.Delete(p.leases_pb.DeleteRequest(id=lease_id)))

    @asynccontextmanager
    async def lease(self, purpose: str, labels: dict[str, str] | None = None) -> AsyncIterator[str]:
        """Hold a lease (``new_lease``) for the block; dropped when it ends, however it ends."""
        lease_id = await self.new_lease(purpose, labels)
        try:
            yield lease_id
        finally:
            await self.drop_lease(lease_id)
