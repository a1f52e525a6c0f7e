"""RunPodSandbox: validate, reserve the name, then build the pod with independent steps in parallel.

Order of work (each step's undo is pushed on an AsyncExitStack, so a failure anywhere rolls back
what exists, in reverse):

1. validate the config and the runtime handler; reserve ``<pod>_<ns>_<uid>_<attempt>``;
2. the pod's directories and files (hostname, hosts, resolv.conf, /dev/shm tmpfs);
3. unless host network: choose the netns path and start creating the namespace;
4. in parallel: (a) once the netns exists, CNI ADD into it; (b) container record, snapshot and —
   once the netns exists — task create and start. The pause process does not need the IP, so the
   two slowest steps (plugins, runc) overlap;
5. the record enters the cache READY and the call answers; the IP is then written into the
   container's metadata extension (network.json already holds it on disk).

The work runs in its own task, not the caller's: when the kubelet times out and retries with the same
name and attempt, the retry awaits the same task and gets the same sandbox ID
(docs/sandboxes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from contextlib import AsyncExitStack

from criproxy import errors, nrihooks
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.network import cniconf, netns, pod
from criproxy.oci import cgroups
from criproxy.podsandbox import events as sandbox_events
from criproxy.podsandbox import files as sandbox_files
from criproxy.podsandbox import network as sandbox_network
from criproxy.podsandbox import pause as sandbox_pause
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import checks
from criproxy.translate import sandbox as t

Planned = tuple[cniconf.NetworkConfig, pod.NetworkState]   # the network and its network.json record


def validate(app: App, request: cri.RunPodSandboxRequest) -> None:
    meta = request.config.metadata
    missing = [f for f in ("name", "uid", "namespace") if not getattr(meta, f)]
    if missing:
        raise errors.InvalidArgument(f"pod sandbox config metadata is missing {', '.join(missing)}")
    for f in ("name", "uid", "namespace"):     # CNI_ARGS carries them: ';' and '=' would inject arguments
        checks.plain(f"pod sandbox metadata.{f}", getattr(meta, f), checks.NAME_MAX, ";=")
    checks.plain("pod hostname", request.config.hostname, checks.HOSTNAME_MAX)
    checks.labels("pod sandbox config", request.config.labels)
    log_dir = request.config.log_directory
    if log_dir and (not os.path.isabs(log_dir) or "\0" in log_dir):
        raise errors.InvalidArgument(f"pod log_directory {log_dir[:200]!r} must be an absolute path")
    cgroups.check_parent(request.config.linux.cgroup_parent, t.systemd_cgroup(app.config, request.runtime_handler))
    ns = request.config.linux.security_context.namespace_options
    if ns.HasField("userns_options") and ns.userns_options.mode == cri.POD:
        raise errors.InvalidArgument("user namespaces for pods are not supported by this runtime "
                                     "(Status reports user_namespaces=false)")
    if ns.network != cri.NODE:
        try:
            pod.bandwidth(dict(request.config.annotations))
        except ValueError as e:
            raise errors.InvalidArgument(f"pod bandwidth annotation ({pod.INGRESS_ANNOTATION} or "
                                         f"{pod.EGRESS_ANNOTATION}): {e}") from None


def new_record(app: App, request: cri.RunPodSandboxRequest) -> SandboxRecord:
    handler = request.runtime_handler
    rh = t.handler_config(app.config, handler)
    return SandboxRecord(id=os.urandom(32).hex(), name=t.sandbox_name(request.config.metadata),
                         config=request.config, runtime_handler=handler, created_at=time.time_ns(),
                         runtime_type=rh.runtime_type)


@rpc("RunPodSandbox")
async def run_pod_sandbox(app: App, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
    validate(app, request)
    name = t.sandbox_name(request.config.metadata)
    op = app.sandbox_runs.current(name)
    if op is None:
        holder = app.sandbox_names.holder(name)
        if holder is not None and app.sandboxes.find(holder) is not None:
            return cri.RunPodSandboxResponse(pod_sandbox_id=holder)   # a retry of a finished run
        rec = new_record(app, request)
        app.sandbox_names.reserve(name, rec.id)
        op, _ = app.sandbox_runs.spawn(name, lambda: build(app, rec), app.spawn, f"run-sandbox-{rec.id[:12]}")
    return cri.RunPodSandboxResponse(pod_sandbox_id=await app.sandbox_runs.wait(op))


async def build(app: App, rec: SandboxRecord) -> str:
    async with AsyncExitStack() as undo:
        undo.callback(app.sandbox_names.release, rec.name)
        undo.callback(sandbox_files.remove, app, rec.id)
        sandbox_files.create(app, rec)
        net = None if rec.host_network else sandbox_network.current_network(app)
        netns_ready: asyncio.Future[str] | None = None
        planned: Planned | None = None
        if net is not None:
            rec.netns_path = netns.new_path(app.config.netns_dir)
            planned = (net, sandbox_network.plan(app, rec, net))
            undo.callback(netns.remove, rec.netns_path)
            netns_ready = asyncio.ensure_future(sandbox_network.create_netns(app, rec))
        await parallel_steps(app, rec, planned, netns_ready, undo)
        async with nrihooks.lifecycle(app):      # NRI: a syncing plugin sees the pod once
            await nrihooks.pod_event(app, api.RUN_POD_SANDBOX, rec)    # a plugin's refusal fails the run
            if rec.exit_status is None:
                app.sandboxes.set_state(rec, cri.SANDBOX_READY)
            app.sandboxes.add(rec)
        undo.pop_all()
    sandbox_events.publish(app, rec, cri.CONTAINER_CREATED_EVENT)
    sandbox_events.publish(app, rec, cri.CONTAINER_STARTED_EVENT)
    if net is not None:
        app.spawn(sandbox_pause.save_network_facts(app, rec), f"sandbox-facts-{rec.id[:12]}")
    return rec.id


async def parallel_steps(app: App, rec: SandboxRecord, net: Planned | None,
                         netns_ready: asyncio.Future[str] | None, undo: AsyncExitStack) -> None:
    """CNI ADD beside the pause container; each branch that succeeded is undone if the other failed.

    The netns path is known up front, so the container record and snapshot are made while the
    namespace is still being created; only Tasks.Create and CNI ADD wait for it. A failing branch
    cleans up only its own work (ADD runs DEL itself) and never touches the netns, which the other
    branch may still be using; the netns belongs to the outer undo stack.
    """
    branches = [_pause_branch(app, rec, netns_ready)]
    if net is not None and netns_ready is not None:
        branches.insert(0, _network_branch(app, rec, net, netns_ready))
    results = await asyncio.gather(*branches, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for r in results:
        if isinstance(r, AsyncExitStack):
            await undo.enter_async_context(r)
    if failures:
        raise failures[0]


async def _network_branch(app: App, rec: SandboxRecord, net: Planned,
                          netns_ready: asyncio.Future[str]) -> AsyncExitStack:
    await asyncio.shield(netns_ready)
    await sandbox_network.add(app, rec, *net)
    undo = AsyncExitStack()
    undo.push_async_callback(sandbox_network.teardown, app, rec)
    return undo


async def _pause_branch(app: App, rec: SandboxRecord, netns_ready: asyncio.Future[str] | None) -> AsyncExitStack:
    async with AsyncExitStack() as undo:
        mounts = await sandbox_pause.create_container(app, rec)
        undo.push_async_callback(sandbox_pause.delete_container, app, rec.id)
        if netns_ready is not None:
            await asyncio.shield(netns_ready)
        undo.push_async_callback(_quiet_stop, app, rec)
        await sandbox_pause.start_task(app, rec, mounts)
        return undo.pop_all()
    raise AssertionError("unreachable")


async def _quiet_stop(app: App, rec: SandboxRecord) -> None:
    with contextlib.suppress(errors.CriError):
        await sandbox_pause.stop_task(app, rec)
