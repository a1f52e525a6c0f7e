"""The runtime side of NRI: accept plugins on a socket, register, configure and synchronize them, and
call them for events in index order.

Per plugin connection (docs/nri.md has a trace): the trunk is multiplexed (criproxy.nri.mux); on id 2
criproxy serves the Runtime service, on id 1 it calls the plugin's Plugin service. The plugin must call
``RegisterPlugin`` within the registration timeout; criproxy answers with ``Configure`` (the plugin's
reply is its event mask) and ``Synchronize`` (every pod and container it knows, split into chunks
marked ``more`` when one message would be over ttrpc's limit), applies the updates the plugin asks
for, and only then adds the plugin to the list that sees events. ``gate`` is held alone for a
plugin's synchronization and shared by every lifecycle call that reports an event (from its event
until the store shows the change), so a plugin connecting while pods and containers are being made
sees each of them exactly once: in its synchronize, or as an event.

A plugin that times out, hangs up or breaks the protocol is disconnected and the event counts as
handled for it, as containerd does; an error status from a plugin is returned to the caller (the
lifecycle step fails where it can fail).

The runtime state reaches this module as callbacks (``snapshot``, ``apply_updates``), so it depends on
nothing above the transport and its logic can be tested with plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from criproxy._gen.nri import api_pb2 as api
from criproxy.nri import mux, ttrpc

log = logging.getLogger(__name__)

RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
ALL_EVENTS = (1 << (api.LAST - 1)) - 1           # bits 0..13: events 1..14
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_INDEX = re.compile(r"[0-9]{2}")
# Synchronize chunks stay well below ttrpc's 4 MiB message limit (the envelope adds a little).
SYNC_CHUNK_BYTES = 3 << 20
MAX_PLUGINS = 64

# Events a plugin that answers UNIMPLEMENTED gets again as a StateChange (no reply to apply).
STATE_CHANGE_EVENTS = frozenset({api.RUN_POD_SANDBOX, api.STOP_POD_SANDBOX, api.REMOVE_POD_SANDBOX,
                                 api.POST_UPDATE_POD_SANDBOX, api.POST_CREATE_CONTAINER, api.START_CONTAINER,
                                 api.POST_START_CONTAINER, api.POST_UPDATE_CONTAINER, api.REMOVE_CONTAINER})
R = TypeVar("R", bound=Message)
Snapshot = Callable[[], tuple[list[api.PodSandbox], list[api.Container]]]
ApplyUpdates = Callable[[Sequence[api.ContainerUpdate]], Awaitable[list[api.ContainerUpdate]]]


class PluginError(Exception):
    """A plugin refused an event (an error status); the lifecycle step fails with this message."""

    def __init__(self, plugin: str, code: int, message: str) -> None:
        super().__init__(f"NRI plugin {plugin}: {message}")
        self.plugin, self.code, self.message = plugin, code, message


def subscribed(events: int, event: int) -> bool:
    return bool(events & (1 << (event - 1)))


def event_mask(reply: int) -> int:
    """The plugin's subscription from its Configure reply: 0 means every event; bits beyond the known
    events are a protocol error."""
    if reply == 0:
        return ALL_EVENTS
    if reply & ~ALL_EVENTS:
        raise ValueError(f"invalid event mask {reply:#x}")
    return reply


def sync_chunks(pods: Sequence[api.PodSandbox], containers: Sequence[api.Container],
                limit: int = SYNC_CHUNK_BYTES) -> list[api.SynchronizeRequest]:
    """Split a synchronization into requests of at most about ``limit`` bytes each: pods first, then
    containers, every request but the last marked ``more``."""
    chunks: list[api.SynchronizeRequest] = [api.SynchronizeRequest()]
    size = 0
    for kind, items in (("pods", pods), ("containers", containers)):
        for item in items:
            n = item.ByteSize() + 8
            if size and size + n > limit:
                chunks.append(api.SynchronizeRequest())
                size = 0
            getattr(chunks[-1], kind).append(item)
            size += n
    for chunk in chunks[:-1]:
        chunk.more = True
    return chunks


@dataclass(eq=False)
class Plugin:
    """One connected plugin."""

    name: str = ""
    index: str = ""
    events: int = 0
    trunk: mux.Mux | None = None
    client: ttrpc.Client | None = None
    server: ttrpc.Server | None = None
    config: str = ""
    process: asyncio.subprocess.Process | None = None     # a pre-installed plugin's, killed on close
    registered: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    closed: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.index, self.name)

    def __str__(self) -> str:
        return f"{self.index}-{self.name}" if self.name else "unregistered plugin"

    async def close(self) -> None:
        self.closed = True
        for part in (self.client, self.server, self.trunk):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


_TRAMPOLINE = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
               "os.execve(sys.argv[2], [sys.argv[2]], os.environ)")
_PREINSTALLED = re.compile(r"([0-9]{2})-(.+)")
MAX_CONFIG_BYTES = 1 << 20


def discover(plugin_dir: Path, config_dir: Path | None) -> list[tuple[str, str, Path, str]]:
    """(name, index, executable, config text) of the pre-installed plugins, in index order; a file
    whose name is not ``NN-name`` aborts discovery, as in NRI. Runs in a thread (reads files)."""
    try:
        entries = sorted(os.scandir(plugin_dir), key=lambda e: e.name)[:MAX_PLUGINS]
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        if not entry.is_file() or not os.access(entry.path, os.X_OK):
            continue
        m = _PREINSTALLED.fullmatch(entry.name)
        if m is None:
            log.error("NRI: pre-installed plugin %r is not named NN-name: none started", entry.name)
            return []
        index, name = m.groups()
        config = ""
        for candidate in (f"{index}-{name}.conf", f"{name}.conf"):
            if config_dir is None:
                break
            path = config_dir / candidate
            try:
                with open(path, "rb") as f:
                    config = f.read(MAX_CONFIG_BYTES).decode(errors="replace")
                break
            except (FileNotFoundError, IsADirectoryError):
                continue
        out.append((name, index, Path(entry.path), config))
    return out


@dataclass(eq=False)
class Settings:
    socket: Path
    registration_timeout: float = 5.0
    request_timeout: float = 2.0
    runtime_name: str = "criproxy"
    runtime_version: str = ""
    plugin_dir: Path | None = None          # pre-installed plugins (NN-name executables); None: none
    plugin_config_dir: Path | None = None   # their config files (NN-name.conf, else name.conf)


class SyncGate:
    """Lifecycle calls share it, a new plugin's synchronization holds it alone (and is let in ahead
    of lifecycle calls that arrive while it waits, so a steady stream of creates cannot starve it)."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            try:
                await self._cond.wait_for(lambda: self._shared == 0)
            except BaseException:
                self._exclusive = False
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Adaptation:
    """The plugins of one runtime. :meth:`start` binds the socket; :meth:`stop` disconnects everyone."""

    def __init__(self, settings: Settings, snapshot: Snapshot, apply_updates: ApplyUpdates) -> None:
        self.settings = settings
        self._snapshot, self.apply_updates = snapshot, apply_updates
        self.gate = SyncGate()
        self.plugins: list[Plugin] = []           # registered and synchronized, in index order
        # Containers whose StopContainer event went out (it goes once); an ID leaves with its container.
        self.stop_sent: set[str] = set()
        self._pending: set[Plugin] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- socket ------------------------------------------------------------------------------------
    async def start(self) -> None:
        path = self.settings.socket
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()           # a stale socket of an earlier run
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        log.info("NRI: listening for plugins on %s", path)
        if self.settings.plugin_dir is not None:
            for name, index, exe, config in await asyncio.to_thread(discover, self.settings.plugin_dir,
                                                                    self.settings.plugin_config_dir):
                await self.launch(name, index, exe, config)

    async def launch(self, name: str, index: str, exe: Path, config: str) -> None:
        """Start a pre-installed plugin with one end of a socketpair as its fd 3 and an environment of
        exactly NRI_PLUGIN_NAME, NRI_PLUGIN_IDX and NRI_PLUGIN_SOCKET=3, then serve the other end."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = theirs.fileno()
        try:
            # A tiny trampoline moves the socket to fd 3, closes the original number and execs the
            # plugin (a shell cannot: dash takes single-digit fds only). The fd is an int, the plugin
            # path an argument: nothing is interpolated into code.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(fd), str(exe), pass_fds=(fd,),
                env={"NRI_PLUGIN_NAME": name, "NRI_PLUGIN_IDX": index, "NRI_PLUGIN_SOCKET": "3"},
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            ours.close()
            log.warning("NRI: cannot start plugin %s-%s: %s", index, name, exc)
            return
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        task = asyncio.get_running_loop().create_task(self._run_launched(reader, writer, name, index, config, proc),
                                                      name=f"nri-plugin-{index}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_launched(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str,
                            index: str, config: str, proc: asyncio.subprocess.Process) -> None:
        try:
            await self.connect(reader, writer, name, index, config, proc)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.settings.socket.unlink()
        for plugin in [*self.plugins, *self._pending]:
            await plugin.close()
        self.plugins.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.plugins) + len(self._pending) >= MAX_PLUGINS:
            log.warning("NRI: refusing a plugin connection: %d plugins already", MAX_PLUGINS)
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(self.connect(reader, writer), name="nri-plugin")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one plugin --------------------------------------------------------------------------------
    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      name: str = "", index: str = "", config: str = "",
                      process: asyncio.subprocess.Process | None = None) -> None:
        """Run one plugin connection from registration until it closes. ``name``/``index`` are given
        for pre-installed plugins, which keep those of their file."""
        plugin = Plugin(name=name, index=index, config=config, process=process)
        self._pending.add(plugin)
        trunk = plugin.trunk = mux.Mux(reader, writer)
        plugin.client = ttrpc.Client(trunk.open(mux.PLUGIN_SERVICE_CONN))
        plugin.server = ttrpc.Server(trunk.open(mux.RUNTIME_SERVICE_CONN), self._runtime_service(plugin))
        for part in (trunk, plugin.client, plugin.server):
            part.start()
        try:
            await self._handshake(plugin)
        except Exception as exc:
            log.warning("NRI: %s not admitted: %s", plugin, exc)
            self._pending.discard(plugin)
            await plugin.close()
            return
        self._pending.discard(plugin)
        await trunk.closed.wait()
        self._drop(plugin, "connection closed")

    async def _handshake(self, plugin: Plugin) -> None:
        s = self.settings
        try:
            await asyncio.wait_for(asyncio.shield(plugin.registered), s.registration_timeout)
        except TimeoutError:
            raise RuntimeError(f"no registration within {s.registration_timeout}s") from None
        assert plugin.client is not None
        reply = await plugin.client.call(
            PLUGIN_SERVICE, "Configure",
            api.ConfigureRequest(config=plugin.config, runtime_name=s.runtime_name, runtime_version=s.runtime_version,
                                 registration_timeout=int(s.registration_timeout * 1000),
                                 request_timeout=int(s.request_timeout * 1000)),
            api.ConfigureResponse, timeout=s.request_timeout)
        plugin.events = event_mask(reply.events)
        async with self.gate.exclusive():
            pods, containers = self._snapshot()
            updates = await self._synchronize(plugin, pods, containers)
            if updates:
                failed = await self.apply_updates(updates)
                for f in failed:
                    log.warning("NRI: %s: synchronize update of container %s failed", plugin, f.container_id)
            if plugin.closed:
                raise RuntimeError("closed during synchronization")
            self.plugins.append(plugin)
            self.plugins.sort(key=lambda p: p.key)
        log.info("NRI: plugin %s connected (events %#x, synchronized %d pods, %d containers)",
                 plugin, plugin.events, len(pods), len(containers))

    async def _synchronize(self, plugin: Plugin, pods: list[api.PodSandbox],
                           containers: list[api.Container]) -> list[api.ContainerUpdate]:
        assert plugin.client is not None
        timeout = self.settings.request_timeout
        try:
            reply = await plugin.client.call(PLUGIN_SERVICE, "Synchronize",
                                             api.SynchronizeRequest(pods=pods, containers=containers),
                                             api.SynchronizeResponse, timeout=timeout)
            return list(reply.update)
        except ttrpc.TtrpcError as exc:
            if exc.code != ttrpc.RESOURCE_EXHAUSTED:
                raise
        for chunk in sync_chunks(pods, containers):
            reply = await plugin.client.call(PLUGIN_SERVICE, "Synchronize", chunk, api.SynchronizeResponse,
                                             timeout=timeout)
        return list(reply.update)

    def _runtime_service(self, plugin: Plugin) -> ttrpc.Services:
        async def register(req: Message) -> Message:
            assert isinstance(req, api.RegisterPluginRequest)
            if plugin.registered.done():
                raise ttrpc.TtrpcError(ttrpc.INVALID_ARGUMENT, "plugin already registered")
            if not plugin.name:     # a socket plugin names itself; a pre-installed one keeps its file's
                if not _NAME.fullmatch(req.plugin_name):
                    raise ttrpc.TtrpcError(ttrpc.INVALID_ARGUMENT, f"invalid plugin name {req.plugin_name!r}")
                if not _INDEX.fullmatch(req.plugin_idx):
                    raise ttrpc.TtrpcError(ttrpc.INVALID_ARGUMENT, f"invalid plugin index {req.plugin_idx!r}")
                plugin.name, plugin.index = req.plugin_name, req.plugin_idx
            plugin.registered.set_result(None)
            return api.Empty()

        async def update_containers(req: Message) -> Message:
            assert isinstance(req, api.UpdateContainersRequest)
            if plugin not in self.plugins:
                raise ttrpc.TtrpcError(ttrpc.INVALID_ARGUMENT, "plugin is not registered and synchronized")
            async with self.gate.shared():
                failed = await self.apply_updates(list(req.update))
            return api.UpdateContainersResponse(failed=failed)

        return {RUNTIME_SERVICE: {
            "RegisterPlugin": ttrpc.Method(api.RegisterPluginRequest, register),
            "UpdateContainers": ttrpc.Method(api.UpdateContainersRequest, update_containers),
        }}

    def _drop(self, plugin: Plugin, why: str) -> None:
        if plugin in self.plugins:
            self.plugins.remove(plugin)
            log.warning("NRI: plugin %s disconnected: %s", plugin, why)
        if not plugin.closed:
            task = asyncio.get_running_loop().create_task(plugin.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- events ------------------------------------------------------------------------------------
    async def call(self, event: int, method: str, request: Message, response_type: type[R]) -> list[tuple[Plugin, R]]:
        """Send one event to every subscribed plugin in index order, one at a time; the replies of the
        plugins that answered. A plugin's error status raises :class:`PluginError` (the later plugins
        are not called); a plugin that times out or is gone is disconnected and skipped."""
        out: list[tuple[Plugin, R]] = []
        for plugin in list(self.plugins):
            if not subscribed(plugin.events, event) or plugin.client is None or plugin.closed:
                continue
            try:
                try:
                    reply = await plugin.client.call(PLUGIN_SERVICE, method, request, response_type,
                                                     timeout=self.settings.request_timeout)
                except ttrpc.TtrpcError as exc:
                    if exc.code != ttrpc.UNIMPLEMENTED or event not in STATE_CHANGE_EVENTS:
                        raise
                    # A plugin built without this method gets the event as a StateChange instead.
                    change = api.StateChangeEvent(event=event)  # type: ignore[arg-type]
                    for name in ("pod", "container"):
                        if request.DESCRIPTOR.fields_by_name.get(name) is not None:
                            getattr(change, name).CopyFrom(getattr(request, name))
                    await plugin.client.call(PLUGIN_SERVICE, "StateChange", change, api.Empty,
                                             timeout=self.settings.request_timeout)
                    reply = response_type()
            except ttrpc.TtrpcError as exc:
                if exc.code in (ttrpc.DEADLINE_EXCEEDED, ttrpc.UNAVAILABLE, ttrpc.INTERNAL,
                                ttrpc.RESOURCE_EXHAUSTED):
                    self._drop(plugin, f"{method}: {exc.message}")
                    continue
                raise PluginError(str(plugin), exc.code, exc.message) from None
            out.append((plugin, reply))
        return out
