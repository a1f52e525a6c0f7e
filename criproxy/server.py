"""Composition root: wire the parts, recover, serve CRI, stop cleanly.

Order matters and is the contract with operators:
1. take the socket lock (a second criproxy on the same socket exits with a clear error);
2. reach containerd, starting a managed one when configured or when ``auto`` finds none;
3. bind the CRI socket (mode 0660) with the readiness gate closed: early calls get UNAVAILABLE;
4. run the start steps (``run_start_steps``: cache recovery, image cache, streaming socket, event
   relay) and open the gate;
5. on SIGTERM/SIGINT: stop accepting, let in-flight calls finish within the grace period, run the
   stop steps (``run_stop_steps``), stop a managed containerd.

The start and stop steps are listed in order in ``run_start_steps`` and ``run_stop_steps`` below, as
containerd's service ``Run`` lists its own, rather than registered from the modules that implement them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import grpc.aio

from criproxy import cri, errors, nrihooks, streaming
from criproxy.app import App
from criproxy.config import Config
from criproxy.container import recover as container_recover
from criproxy.containerd import Containerd
from criproxy.containerd.managed import ManagedContainerd, socket_answers
from criproxy.cri import container_create, container_update, runtime_update_config
from criproxy.errors import StartupError
from criproxy.grpcapi.edge import generic_handlers
from criproxy.images import catalog, imagevolume, pull
from criproxy.observability import DebugServer
from criproxy.oci import apparmor, basespec, rro
from criproxy.oci.spec import detect_oom_score_floor
from criproxy.podsandbox import recover as recover_sandboxes
from criproxy.protos import cri as cri_pb
from criproxy.streaming.server import StreamingServer
from criproxy.translate.sandbox import handler_config

log = logging.getLogger("criproxy.server")


def take_socket_lock(listen: Path) -> IO[str]:
    """Hold an exclusive lock beside the socket for the life of the process.

    A lock file (not just a probe of the socket) is what makes two criproxies started at the same
    moment safe; a stale socket file left by a crash is removed once the lock is ours.
    """
    listen.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    lock = open(f"{listen}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StartupError(f"another criproxy is already serving on {listen} (lock {listen}.lock is held)") from None
    if socket_answers(listen):
        lock.close()
        raise StartupError(f"something is already listening on {listen}; refusing to replace a live socket")
    try:
        listen.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:        # a directory, or a read-only place: nothing we may remove
        lock.close()
        raise StartupError(f"cannot replace {listen}: {e.strerror}") from None
    return lock


async def connect_containerd(cfg: Config) -> tuple[Containerd, ManagedContainerd | None]:
    """Reach containerd, starting a private one where the configuration asks for it."""
    managed: ManagedContainerd | None = None
    address = cfg.containerd_address
    mode = cfg.managed_containerd
    if mode == "always" or (mode == "auto" and not socket_answers(address)):
        import shutil

        if mode == "always" or shutil.which(cfg.containerd_binary):
            managed = ManagedContainerd(cfg)
            try:
                address = await managed.start()
            except RuntimeError as e:  # no binary, or one that does not say its version
                raise StartupError(str(e)) from None
    ctrd = Containerd(str(address), cfg.namespace, cfg.containerd_call_timeout)
    deadline = time.monotonic() + cfg.startup_timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            await ctrd.server_version(timeout=2)
            return ctrd, managed
        except errors.CriError as e:
            last = e
            await asyncio.sleep(0.2)
    await ctrd.close()
    if managed is not None:
        await managed.stop()
    hint = "start containerd or run with --managed-containerd=auto" if managed is None else \
        f"see {cfg.containerd_dir / 'containerd.log'}"
    raise StartupError(f"cannot reach containerd at {address}: {last}; {hint}")


async def start_grpc(app: App) -> grpc.aio.Server:
    """Bind the CRI socket with mode 0660; the umask makes it never world-reachable, even briefly."""
    cfg = app.config
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 16 * 1024 * 1024)])
    server.add_generic_rpc_handlers(generic_handlers(app, cri.load_all()))
    try:
        server.add_insecure_port(f"unix://{cfg.listen}")
    except RuntimeError:
        hint = " (a unix socket path has at most 107 bytes)" if len(os.fsencode(cfg.listen)) > 107 else ""
        raise StartupError(f"cannot listen on {cfg.listen}{hint}") from None
    old_umask = os.umask(0o117)
    try:
        await server.start()
    finally:
        os.umask(old_umask)
    os.chmod(cfg.listen, cfg.listen_mode)
    no_apparmor = apparmor.host_support()     # looked at once, here rather than in the first create
    log.info("criproxy listening on %s (containerd %s at %s, namespace %s, %s cgroup driver, AppArmor %s)",
             cfg.listen, app.containerd_version, app.ctrd.address, cfg.namespace, cfg.resolved_cgroup_driver(),
             f"off: {no_apparmor}" if no_apparmor else "on")
    return server


CACHE_VIEW_MAX = 2000       # pods, containers or images shown by /cache, each


def cache_view(app: App) -> dict[str, Any]:
    """What criproxy holds in memory, for the debug socket's /cache (criproxy ui's side panel)."""
    pods = [{"id": s.id, "name": s.config.metadata.name, "namespace": s.config.metadata.namespace,
             "state": cri_pb.PodSandboxState.Name(s.state), "ip": s.ip,
             "ips": [s.ip, *s.additional_ips] if s.ip else [],
             "created_at": s.created_at, "runtime_handler": s.runtime_handler}
            for s in app.sandboxes.all()[:CACHE_VIEW_MAX]]
    ctrs = [{"id": c.id, "name": c.name, "pod": c.sandbox_id, "state": cri_pb.ContainerState.Name(c.state),
             "image": c.config.image.image, "created_at": c.created_at, "exit_code": c.status.exit_code,
             "reason": c.status.reason}
            for c in app.containers.all()[:CACHE_VIEW_MAX]]
    images = [{"id": e.image.id, "tags": e.image.repo_tags, "digests": e.image.repo_digests, "size": e.image.size}
              for e in app.images.catalog.entries()[:CACHE_VIEW_MAX]]
    events = [{"at": round(at, 3), "type": kind, "container": cid, "pod": pod}
              for at, kind, cid, pod in reversed(app.relay.recent)]
    return {"pods": pods, "containers": ctrs, "images": images, "events": events}


async def start_debug(app: App) -> DebugServer:
    app.observer.gauges.update({"sandboxes": lambda: len(app.sandboxes),
                                "containers": lambda: len(app.containers)})
    app.config.state.mkdir(parents=True, exist_ok=True)
    debug = DebugServer(app.observer, app.config.debug_socket or app.config.state / "debug.sock",
                        cache=lambda: cache_view(app))
    try:
        await debug.start()
    except OSError as e:
        raise StartupError(f"cannot serve the debug socket on {debug.path}: {e.strerror or e}") from None
    return debug


async def run_start_steps(app: App) -> StreamingServer:
    """The start steps, in order, after containerd answers and before the readiness gate opens."""
    await container_recover.hold_exec_fifos(app)        # a shim blocked on a dead exec's FIFO answers again
    await pull.drop_stale_pull_leases(app)              # what interrupted pulls left: GC may take it
    await container_create.drop_create_leases(app)      # and a killed criproxy's creation lease
    app.pod_cidr = app.pod_cidr or runtime_update_config.load_pod_cidr(app)   # the last UpdateRuntimeConfig
    await recover_sandboxes.recover_sandboxes(app)      # sandboxes first: containers refer to them
    await container_recover.recover_containers(app)     # then containers, log pumps re-attached
    await imagevolume.prune(app)                        # image volume views no container mounts
    await catalog.load(app)                             # the image cache (events keep it current)
    server = streaming.start(app)                       # bind the streaming socket (a taken port fails here)
    container_recover.start_relay(app)                  # containerd events and the periodic relist
    await nrihooks.start(app, container_update.apply_resources)   # NRI plugins, once the state is known
    return server


async def run_stop_steps(app: App, server: StreamingServer | None) -> None:
    """The stop steps, in order, then cancel what is left in the background; each failure is
    logged and the rest still run, so one broken part cannot keep the others from cleaning up."""
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("nri", lambda: nrihooks.stop(app)),                             # plugins disconnected, socket removed
        ("streaming", server.stop if server is not None else _nothing),   # sessions cancelled, socket closed
        ("registry http", lambda: pull.close_http(app)),
        ("log pumps", lambda: container_recover.close_log_pumps(app)),   # the next criproxy re-attaches
        ("creation leases", lambda: container_create.drop_create_leases(app)),   # no create in flight now
    ]
    for name, step in steps:
        try:
            await step()
        except Exception:
            log.exception("stop step %s failed", name)
    for task in list(app.background):
        task.cancel()
    await asyncio.gather(*app.background, return_exceptions=True)


async def _nothing() -> None:
    return None


def release_startup_memory() -> None:
    """Hand the heap that imports and recovery used back to the OS.

    Start-up allocates far more transient memory (module code objects, descriptor pools, recovery
    buffers) than steady state needs; glibc keeps freed arenas mapped unless asked, so an idle
    criproxy would otherwise carry that peak as RSS forever.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def oom_score_floor(cfg: Config) -> int | None:
    """Detect once whether oom_score_adj values must be raised, and say so once."""
    floor = detect_oom_score_floor(cfg.restrict_oom_score_adj)
    if floor is not None and not cfg.restrict_oom_score_adj:
        log.warning("criproxy lacks CAP_SYS_RESOURCE: oom_score_adj below its own (%d) is raised to %d "
                    "in every spec", floor, floor)
    elif floor is not None:
        log.info("restrict_oom_score_adj: oom_score_adj below criproxy's own (%d) is raised to it", floor)
    return floor


def handler_binaries(cfg: Config) -> dict[str, str]:
    """The runc binary of each runtime handler, by CRI name ("" = the default handler)."""
    names = {"", "runc", *cfg.runtime_handlers}
    out = {}
    for name in names:
        try:
            out[name] = handler_config(cfg, name).binary_name or "runc"
        except errors.InvalidArgument:      # a default handler that is not configured: none
            continue
    return out


def base_specs(cfg: Config) -> dict[str, dict[str, object]]:
    """Each handler's base runtime spec, by CRI name ("" = the default handler); StartupError
    for a file that cannot be used."""
    out = {}
    for name in {"", "runc", *cfg.runtime_handlers}:
        try:
            path = handler_config(cfg, name).base_runtime_spec
        except errors.InvalidArgument:
            continue
        if path:
            out[name] = basespec.load(path)
    return out


async def serve(cfg: Config) -> None:
    lock = take_socket_lock(cfg.listen)
    ctrd, managed = await connect_containerd(cfg)
    app = App(config=cfg, ctrd=ctrd)
    app.oom_score_floor = oom_score_floor(cfg)
    app.rro_support = await rro.probe(handler_binaries(cfg))
    app.base_specs = base_specs(cfg)
    server: grpc.aio.Server | None = None
    try:
        app.containerd_version = await ctrd.server_version(timeout=5)
        server = await start_grpc(app)
        debug = await start_debug(app)
    except BaseException:       # leave no socket, managed containerd or lock behind a failed start
        if server is not None:
            await server.stop(0)
        await ctrd.close()
        if managed is not None:
            await managed.stop()
        lock.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    streaming_server: StreamingServer | None = None
    try:
        streaming_server = await run_start_steps(app)
        app.ready.set()
        release_startup_memory()
        log.info("criproxy ready")
        await stop.wait()
        log.info("stopping: letting in-flight calls finish (grace %.0fs)", cfg.shutdown_grace)
    finally:
        await server.stop(cfg.shutdown_grace)
        await debug.stop()
        await run_stop_steps(app, streaming_server)
        await ctrd.close()
        if managed is not None:
            await managed.stop()
        with contextlib.suppress(FileNotFoundError):
            cfg.listen.unlink()
        lock.close()
