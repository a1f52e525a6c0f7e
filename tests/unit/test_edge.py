"""The edge over a real gRPC server in-process: readiness gate, error table, unimplemented methods.

No containerd is needed: Version answers from memory, and a handler registered here raises our
errors, so what is checked is exactly the edge's own behaviour on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from criproxy import cri as handlers
from criproxy import errors
from criproxy.app import App
from criproxy.config import load
from criproxy.containerd import Containerd
from criproxy.grpcapi.edge import NOT_READY, STATUS, generic_handlers
from criproxy.protos import cri, cri_grpc


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]]]:
    app = App(config=load(None, {}), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))
    raise_this: list[Exception] = []

    async def fails(app: App, request: cri.ContainerStatusRequest) -> cri.ContainerStatusResponse:
        raise raise_this[0]

    async def fails_streaming(app: App, request: cri.StreamContainersRequest
                              ) -> AsyncIterator[cri.StreamContainersResponse]:
        yield cri.StreamContainersResponse()
        raise raise_this[0]

    table = {**handlers.load_all(), "ContainerStatus": fails, "StreamContainers": fails_streaming}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(generic_handlers(app, table))
    sock = tmp_path / "edge.sock"
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
        yield app, cri_grpc.RuntimeServiceStub(ch), raise_this
    await server.stop(None)
    await app.ctrd.close()


async def test_readiness_gate(served: tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]]) -> None:
    app, stub, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Version(cri.VersionRequest())
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and exc.value.details() == NOT_READY
    app.ready.set()
    assert (await stub.Version(cri.VersionRequest())).runtime_name == "criproxy"


@pytest.mark.parametrize(("err", "code"), list(STATUS.items()))
async def test_error_table(served: tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]],
                           err: type[errors.CriError], code: grpc.StatusCode) -> None:
    app, stub, raise_this = served
    app.ready.set()
    raise_this.append(err("what went wrong"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ContainerStatus(cri.ContainerStatusRequest(container_id="x"))
    assert exc.value.code() == code and exc.value.details() == "what went wrong"
    for _ in range(200):  # the status reaches the client before the edge's finally block has run
        if app.observer.rpc_codes[("ContainerStatus", code.name)]:
            break
        await asyncio.sleep(0.005)
    assert app.observer.rpc_codes[("ContainerStatus", code.name)] == 1


async def test_unexpected_exception_is_unknown_with_name(
        served: tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]]) -> None:
    app, stub, raise_this = served
    app.ready.set()
    raise_this.append(KeyError("k"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ContainerStatus(cri.ContainerStatusRequest(container_id="x"))
    assert exc.value.code() == grpc.StatusCode.UNKNOWN and "ContainerStatus" in (exc.value.details() or "")


async def test_unregistered_method_is_unimplemented(
        served: tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]]) -> None:
    app, stub, _ = served
    app.ready.set()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CheckpointContainer(cri.CheckpointContainerRequest(container_id="x"))
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _counted(app: App, method: str, code: str) -> int:
    for _ in range(200):  # the status reaches the client before the edge's finally block has run
        if app.observer.rpc_codes[(method, code)]:
            break
        await asyncio.sleep(0.005)
    return app.observer.rpc_codes[(method, code)]


async def test_server_streams_are_traced_and_counted_like_unary_calls(
        served: tuple[App, cri_grpc.RuntimeServiceStub, list[Exception]]) -> None:
    app, stub, raise_this = served
    app.ready.set()
    got = [m async for m in stub.StreamPodSandboxes(cri.StreamPodSandboxesRequest())]
    assert len(got) == 1
    assert await _counted(app, "StreamPodSandboxes", "OK") == 1
    assert "StreamPodSandboxes" in app.observer.prometheus()

    raise_this.append(errors.NotFound("gone"))
    call = stub.StreamContainers(cri.StreamContainersRequest())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in call:
            pass
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _counted(app, "StreamContainers", "NOT_FOUND") == 1
