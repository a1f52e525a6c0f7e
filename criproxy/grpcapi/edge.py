"""The one edge wrapper every CRI call passes through.

It does four things and nothing else: the readiness gate (UNAVAILABLE until start-up recovery has
finished), the translation trace (a contextvar the containerd wrapper appends to), logging, and the
single table from criproxy's error classes to gRPC status codes. Handlers below it never import grpc.

Handlers are found by method name in ``criproxy.cri.HANDLERS``; every method of the two CRI services
is served, and one without a handler answers UNIMPLEMENTED with its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from criproxy import errors, trace
from criproxy.app import App
from criproxy.protos import cri

log = logging.getLogger("criproxy.edge")

STATUS: dict[type[errors.CriError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
    errors.Unknown: grpc.StatusCode.UNKNOWN,
}
NOT_READY = "criproxy is starting: recovering state from containerd; retry shortly"


def status_of(err: errors.CriError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.UNKNOWN


async def _fail(context: grpc.aio.ServicerContext[Any, Any], name: str, err: BaseException) -> None:
    if isinstance(err, errors.CriError):
        code = status_of(err)
        log.log(logging.INFO if code != grpc.StatusCode.UNKNOWN else logging.WARNING,
                "%s failed: %s: %s", name, code.name, err)
        await context.abort(code, str(err))
    log.exception("%s failed with an unexpected error", name, exc_info=err)
    await context.abort(grpc.StatusCode.UNKNOWN, f"{name}: internal error: {type(err).__name__}: {err}")


def _ended(app: App, tr: trace.Trace, code: str, message: str = "") -> None:
    """Account for one finished call, unary or streamed alike: metrics, the trace ring, the debug log."""
    app.observer.observe(tr, code, time.perf_counter() - tr.started, message)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("trace %s", tr.render())


def _code(err: BaseException) -> str:
    if isinstance(err, errors.CriError):
        return str(status_of(err).name)
    return "CANCELLED" if isinstance(err, asyncio.CancelledError) else "UNKNOWN"


def _unary(app: App, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    tracing = app.config.trace

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not app.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_READY)
        tr = trace.Trace(name)
        tr.request = request
        token = trace.current.set(tr) if tracing else None
        try:
            result = await fn(app, request)
        except Exception as err:
            # Accounted before the abort: grpc.aio sends the status from inside abort(), so a client
            # reading /metrics right after its error must already find the call counted.
            _reset(token)
            _ended(app, tr, _code(err), str(err))
            await _fail(context, name, err)
            raise  # pragma: no cover - _fail always raises (abort)
        except BaseException:
            _reset(token)
            _ended(app, tr, "CANCELLED")
            raise
        _reset(token)
        tr.response = result
        _ended(app, tr, "OK")
        return result
    return behavior


def _reset(token: contextvars.Token[trace.Trace | None] | None) -> None:
    if token is not None:
        with contextlib.suppress(ValueError):   # closed from another context: nothing to restore
            trace.current.reset(token)


def _server_stream(app: App, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """As ``_unary``, for the whole stream: one trace from the request to the last message (or the
    client going away, CANCELLED)."""
    tracing = app.config.trace

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if not app.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_READY)
        tr = trace.Trace(name)
        tr.request = request
        token = trace.current.set(tr) if tracing else None
        code = "OK"
        try:
            async for item in fn(app, request):
                yield item
        except BaseException as err:
            code = _code(err)
            _reset(token)
            _ended(app, tr, code, str(err))   # before the abort, which sends the status (see _unary)
            if not isinstance(err, Exception):
                raise
            await _fail(context, name, err)
        else:
            _reset(token)
            _ended(app, tr, code)
    return behavior


def _unimplemented(full: str, streaming: bool) -> Callable[..., Any]:
    msg = f"criproxy does not implement {full} yet (see the RPC table in the README)"

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, msg)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, msg)
        yield None  # pragma: no cover - abort raises

    return stream if streaming else unary


def _serializer(resp_cls: Any) -> Callable[[Any], bytes]:
    """Serialize a response message; a handler may instead return bytes it serialized (and cached)
    itself, which hot list RPCs do to skip re-serializing an unchanged answer every second."""
    ser = resp_cls.SerializeToString

    def serialize(msg: Any) -> bytes:
        return msg if msg.__class__ is bytes else ser(msg)
    return serialize


def _method_handler(app: App, svc: ServiceDescriptor, m: MethodDescriptor,
                    handlers: dict[str, Callable[..., Any]]) -> grpc.RpcMethodHandler[Any, Any]:
    req_cls = getattr(cri, m.input_type.name)
    resp_cls = getattr(cri, m.output_type.name)
    fn = handlers.get(m.name)
    kw = {"request_deserializer": req_cls.FromString, "response_serializer": _serializer(resp_cls)}
    if m.server_streaming:
        beh = _server_stream(app, m.name, fn) if fn else _unimplemented(f"{svc.full_name}/{m.name}", True)
        return grpc.unary_stream_rpc_method_handler(beh, **kw)
    beh = _unary(app, m.name, fn) if fn else _unimplemented(f"{svc.full_name}/{m.name}", False)
    return grpc.unary_unary_rpc_method_handler(beh, **kw)


def generic_handlers(app: App, handlers: dict[str, Callable[..., Any]]) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """One generic handler per CRI service, covering every method the protos declare."""
    out = []
    for svc in cri.DESCRIPTOR.services_by_name.values():
        methods = {m.name: _method_handler(app, svc, m, handlers) for m in svc.methods}
        out.append(grpc.method_handlers_generic_handler(svc.full_name, methods))
    return out
