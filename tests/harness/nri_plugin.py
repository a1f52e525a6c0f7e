"""A test NRI plugin on criproxy's own ttrpc and mux: connects to a runtime's NRI socket, registers,
and records every call the runtime makes to it (method name and decoded request, in order)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message

from criproxy._gen.nri import api_pb2 as api
from criproxy.nri import mux, ttrpc

PLUGIN = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME = "nri.pkg.api.v1alpha1.Runtime"

# Every method of the Plugin service, with its request and reply types, from the generated descriptors.
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    m.name: (getattr(api, m.input_type.name), getattr(api, m.output_type.name))
    for m in api.DESCRIPTOR.services_by_name["Plugin"].methods
}


@dataclass(eq=False)
class PluginPeer:
    name: str = "test"
    index: str = "10"
    events: int = 0                                       # 0: all
    calls: list[tuple[str, Message]] = field(default_factory=list)
    # Optional replies by method: a function of the request returning the reply (or raising TtrpcError).
    answers: dict[str, Callable[[Message], Awaitable[Message]]] = field(default_factory=dict)
    unimplemented: set[str] = field(default_factory=set)  # methods answered UNIMPLEMENTED (an older plugin)
    synchronized: asyncio.Event = field(default_factory=asyncio.Event)
    trunk: mux.Mux | None = None
    client: ttrpc.Client | None = None
    server: ttrpc.Server | None = None

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    async def connect(self, socket: Path | None = None, register: bool = True, sock: object = None) -> None:
        """Connect to the runtime's socket, or use ``sock`` (a pre-installed plugin's fd 3)."""
        if sock is not None:
            reader, writer = await asyncio.open_unix_connection(sock=sock)  # type: ignore[arg-type]
        else:
            reader, writer = await asyncio.open_unix_connection(str(socket))
        self.trunk = mux.Mux(reader, writer)
        table = {name: ttrpc.Method(req, self._handler(name, resp)) for name, (req, resp) in METHODS.items()}
        self.server = ttrpc.Server(self.trunk.open(mux.PLUGIN_SERVICE_CONN), {PLUGIN: table})
        self.client = ttrpc.Client(self.trunk.open(mux.RUNTIME_SERVICE_CONN))
        for part in (self.trunk, self.server, self.client):
            part.start()
        if register:
            await self.client.call(RUNTIME, "RegisterPlugin",
                                   api.RegisterPluginRequest(plugin_name=self.name, plugin_idx=self.index),
                                   api.Empty, timeout=10)

    def _handler(self, name: str, resp: type[Message]) -> Callable[[Message], Awaitable[Message]]:
        async def handle(req: Message) -> Message:
            self.calls.append((name, req))
            if name in self.unimplemented:
                raise ttrpc.TtrpcError(ttrpc.UNIMPLEMENTED, f"{name} not implemented")
            answer = self.answers.get(name)
            if answer is not None:
                out = await answer(req)
            elif name == "Configure":
                out = api.ConfigureResponse(events=self.events)
            else:
                out = resp()
            if name == "Synchronize" and not getattr(req, "more", False):
                self.synchronized.set()
            return out
        return handle

    async def close(self) -> None:
        for part in (self.client, self.server, self.trunk):
            if part is not None:
                await part.close()
