"""criproxy's state as NRI sees it, and NRI's container updates carried out as CRI updates.

criproxy.nri knows the protocol; this module knows criproxy: it turns sandbox and container records
into NRI ``PodSandbox`` and ``Container`` messages (for Synchronize and events), applies a plugin's
``ContainerUpdate`` through UpdateContainerResources (only the fields containerd applies: memory
limit, CPU shares/period/quota, cpuset CPUs/mems, hugepage limits, unified), and starts and stops
the NRI listener when ``nri_enable`` is set. The CRI modules call the event functions below at the
points containerd does (docs/nri.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from criproxy import __version__, errors
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.nri import adjust
from criproxy.nri.adaptation import Adaptation, PluginError, Settings
from criproxy.protos import cri
from criproxy.state.container import ContainerRecord
from criproxy.state.sandbox import SandboxRecord

log = logging.getLogger(__name__)

# CRI container state -> NRI container state.
_STATES: dict[int, api.ContainerState] = {
    cri.CONTAINER_CREATED: api.CONTAINER_CREATED, cri.CONTAINER_RUNNING: api.CONTAINER_RUNNING,
    cri.CONTAINER_EXITED: api.CONTAINER_STOPPED, cri.CONTAINER_UNKNOWN: api.CONTAINER_UNKNOWN}


def pod_message(rec: SandboxRecord) -> api.PodSandbox:
    meta = rec.config.metadata
    pod = api.PodSandbox(id=rec.id, name=meta.name, uid=meta.uid, namespace=meta.namespace,
                         labels=dict(rec.config.labels), annotations=dict(rec.config.annotations),
                         runtime_handler=rec.runtime_handler, pid=max(rec.pid, 0),
                         ips=[ip for ip in (rec.ip, *rec.additional_ips) if ip])
    pod.linux.cgroup_parent = rec.config.linux.cgroup_parent
    return pod


def container_message(rec: ContainerRecord) -> api.Container:
    cfg = rec.config
    return api.Container(
        id=rec.id, pod_sandbox_id=rec.sandbox_id, name=cfg.metadata.name,
        state=_STATES.get(rec.state, api.CONTAINER_UNKNOWN),
        labels=dict(cfg.labels), annotations=dict(cfg.annotations), args=[*cfg.command, *cfg.args],
        env=[f"{e.key}={e.value.decode(errors='replace')}" for e in cfg.envs], pid=max(rec.status.pid, 0),
        created_at=rec.created_at,
        started_at=rec.status.started_at, finished_at=rec.status.finished_at, exit_code=rec.status.exit_code,
        status_reason=rec.status.reason, status_message=rec.status.message)


def snapshot(app: App) -> tuple[list[api.PodSandbox], list[api.Container]]:
    """What a new plugin is synchronized with: every pod criproxy knows and the containers that are
    created or running (containerd leaves out exited and unknown ones)."""
    pods = [pod_message(s) for s in app.sandboxes.all()]
    live = {p.id for p in pods}
    containers = [container_message(c) for c in app.containers.all()
                  if c.sandbox_id in live and c.state in (cri.CONTAINER_CREATED, cri.CONTAINER_RUNNING)]
    return pods, containers


def nri_resources(res: cri.LinuxContainerResources) -> api.LinuxResources:
    """CRI resources as NRI shows them to plugins."""
    out = api.LinuxResources()
    if res.memory_limit_in_bytes:
        out.memory.limit.value = res.memory_limit_in_bytes
    if res.cpu_shares:
        out.cpu.shares.value = res.cpu_shares
    if res.cpu_quota:
        out.cpu.quota.value = res.cpu_quota
    if res.cpu_period:
        out.cpu.period.value = res.cpu_period
    out.cpu.cpus, out.cpu.mems = res.cpuset_cpus, res.cpuset_mems
    for h in res.hugepage_limits:
        out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    out.unified.update(res.unified)
    return out


async def update_container(app: App, rec: ContainerRecord, linux: cri.LinuxContainerResources
                           ) -> cri.LinuxContainerResources:
    """The UpdateContainer event: what plugins answer for this container replaces the matching
    fields of the request; their updates of other containers are applied (failures logged). A
    refusal raises and nothing is changed."""
    if app.nri is None:
        return linux
    sandbox = app.sandboxes.find(rec.sandbox_id)
    pod = pod_message(sandbox) if sandbox is not None else api.PodSandbox(id=rec.sandbox_id)
    request = api.UpdateContainerRequest(pod=pod, container=container_message(rec),
                                         linux_resources=nri_resources(linux))
    try:
        replies = await app.nri.call(api.UPDATE_CONTAINER, "UpdateContainer", request, api.UpdateContainerResponse)
    except PluginError as exc:
        raise errors.Unknown(f"NRI: update of container {rec.id} refused: {exc}") from None
    updates = [u for _, r in replies for u in r.update]
    own = [u for u in updates if u.container_id == rec.id]
    others = [u for u in updates if u.container_id != rec.id]
    if others:
        await app.nri.apply_updates(others)
    out = cri.LinuxContainerResources()
    out.CopyFrom(linux)
    for u in own:
        wanted = cri_resources(u.linux.resources)
        if wanted.hugepage_limits:
            del out.hugepage_limits[:]
        if wanted.unified:
            out.unified.clear()
        out.MergeFrom(wanted)
    return out


def cri_resources(update: api.LinuxResources) -> cri.LinuxContainerResources:
    """The part of an NRI resource update that CRI's UpdateContainerResources carries."""
    out = cri.LinuxContainerResources()
    if update.memory.HasField("limit"):
        out.memory_limit_in_bytes = update.memory.limit.value
    cpu = update.cpu
    if cpu.HasField("shares"):
        out.cpu_shares = cpu.shares.value
    if cpu.HasField("period"):
        out.cpu_period = cpu.period.value
    if cpu.HasField("quota"):
        out.cpu_quota = cpu.quota.value
    out.cpuset_cpus, out.cpuset_mems = cpu.cpus, cpu.mems
    for h in update.hugepage_limits:
        out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    out.unified.update(update.unified)
    return out


UpdateResources = Callable[[App, cri.UpdateContainerResourcesRequest], Awaitable[object]]


async def apply_updates(app: App, update: UpdateResources, updates: Sequence[api.ContainerUpdate]
                        ) -> list[api.ContainerUpdate]:
    """Carry out each update as UpdateContainerResources; the ones that failed (unless they asked to
    have failures ignored)."""
    failed: list[api.ContainerUpdate] = []
    for u in updates:
        try:
            await update(app, cri.UpdateContainerResourcesRequest(container_id=u.container_id,
                                                                  linux=cri_resources(u.linux.resources)))
        except errors.CriError as exc:
            log.warning("NRI: update of container %s failed: %s", u.container_id, exc)
            if not u.ignore_failure:
                failed.append(u)
    return failed


async def start(app: App, update: UpdateResources) -> None:
    """Listen for NRI plugins when the configuration enables it; ``update`` is CRI's
    UpdateContainerResources (cri/container_update.py), which plugin updates go through."""
    cfg = app.config
    if not cfg.nri_enable:
        return
    settings = Settings(socket=cfg.nri_socket, registration_timeout=cfg.nri_plugin_registration_timeout,
                        request_timeout=cfg.nri_plugin_request_timeout, runtime_name="criproxy",
                        runtime_version=__version__, plugin_dir=cfg.nri_plugin_dir,
                        plugin_config_dir=cfg.nri_plugin_config_dir)
    nri = Adaptation(settings, lambda: snapshot(app), lambda updates: apply_updates(app, update, updates))
    try:
        await nri.start()
    except OSError as exc:
        raise errors.StartupError(f"cannot listen for NRI plugins on {cfg.nri_socket}: {exc}") from None
    app.nri = nri


async def stop(app: App) -> None:
    if app.nri is not None:
        await app.nri.stop()
        app.nri = None


def lifecycle(app: App) -> contextlib.AbstractAsyncContextManager[None]:
    """Held by a lifecycle call from its NRI event until the store shows its result, so a plugin
    synchronizing meanwhile sees the object once (a no-op without NRI)."""
    return app.nri.gate.shared() if app.nri is not None else contextlib.nullcontext()


def _container_from_spec(rec: ContainerRecord, spec: dict[str, Any]) -> api.Container:
    """The container being created as plugins see it: from its record and the spec just built."""
    c = container_message(rec)
    c.state = api.CONTAINER_UNKNOWN
    process = spec.get("process") or {}
    c.args[:] = [str(a) for a in process.get("args") or []]
    c.env[:] = [str(e) for e in process.get("env") or []]
    for m in spec.get("mounts") or []:
        c.mounts.add(destination=str(m.get("destination", "")), type=str(m.get("type", "")),
                     source=str(m.get("source", "")), options=[str(o) for o in m.get("options") or []])
    return c


async def create_container(app: App, sandbox: SandboxRecord, rec: ContainerRecord, spec: dict[str, Any]) -> None:
    """The CreateContainer event: the plugins' adjustments merged and applied to ``spec``, their
    updates of other containers carried out (failures logged). A refusal or conflict raises, and
    the caller's undo removes what the creation made."""
    if app.nri is None:
        return
    request = api.CreateContainerRequest(pod=pod_message(sandbox), container=_container_from_spec(rec, spec))
    try:
        replies = await app.nri.call(api.CREATE_CONTAINER, "CreateContainer", request, api.CreateContainerResponse)
        merged = adjust.merge([(str(p), r.adjust) for p, r in replies])
    except (PluginError, adjust.Conflict) as exc:
        raise errors.Unknown(f"NRI: container {rec.id} refused: {exc}") from None
    updates = [u for _, r in replies for u in r.update]
    if any(u.container_id == rec.id for u in updates):
        raise errors.Unknown(f"NRI: a plugin asked to update container {rec.id} while it is being created")
    adjust.apply(spec, merged)
    if updates:
        await app.nri.apply_updates(updates)


async def container_event(app: App, event: int, rec: ContainerRecord) -> None:
    """A container event without a reply to apply (PostCreate, Start, PostStart, PostUpdate, Remove); a plugin's
    refusal raises (it fails StartContainer, as in containerd; elsewhere the caller logs it)."""
    if app.nri is None:
        return
    sandbox = app.sandboxes.find(rec.sandbox_id)
    pod = pod_message(sandbox) if sandbox is not None else api.PodSandbox(id=rec.sandbox_id)
    method, req_type, resp_type = _CONTAINER_EVENTS[event]
    try:
        await app.nri.call(event, method, req_type(pod=pod, container=container_message(rec)), resp_type)
    except PluginError as exc:
        raise errors.Unknown(f"NRI: {method} of container {rec.id}: {exc}") from None


async def pod_event(app: App, event: int, sandbox: SandboxRecord) -> None:
    """RunPodSandbox (a refusal raises: it fails the call), StopPodSandbox, RemovePodSandbox."""
    if app.nri is None:
        return
    method, req_type, resp_type = _POD_EVENTS[event]
    try:
        await app.nri.call(event, method, req_type(pod=pod_message(sandbox)), resp_type)
    except PluginError as exc:
        if event == api.RUN_POD_SANDBOX:      # as containerd: the plugins that saw the pod can let go of it
            await pod_post_event(app, api.STOP_POD_SANDBOX, sandbox)
            await pod_post_event(app, api.REMOVE_POD_SANDBOX, sandbox)
        raise errors.Unknown(f"NRI: {method} of pod {sandbox.id}: {exc}") from None


async def stop_container_event(app: App, rec: ContainerRecord) -> None:
    """StopContainer, once per container (after CRI StopContainer, a pod stop, or before its
    removal); the updates plugins ask for in reply are applied to other containers, errors logged."""
    if app.nri is None or rec.id in app.nri.stop_sent:
        return
    app.nri.stop_sent.add(rec.id)
    sandbox = app.sandboxes.find(rec.sandbox_id)
    pod = pod_message(sandbox) if sandbox is not None else api.PodSandbox(id=rec.sandbox_id)
    try:
        replies = await app.nri.call(api.STOP_CONTAINER, "StopContainer",
                                     api.StopContainerRequest(pod=pod, container=container_message(rec)),
                                     api.StopContainerResponse)
    except PluginError as exc:
        log.warning("NRI: StopContainer of container %s: %s", rec.id, exc)
        return
    updates = [u for _, r in replies for u in r.update if u.container_id != rec.id]
    if updates:
        await app.nri.apply_updates(updates)


async def remove_container_event(app: App, rec: ContainerRecord) -> None:
    """RemoveContainer, after StopContainer if that has not gone out yet; errors logged."""
    if app.nri is None:
        return
    await stop_container_event(app, rec)
    await post_event(app, api.REMOVE_CONTAINER, rec)
    app.nri.stop_sent.discard(rec.id)


async def pod_post_event(app: App, event: int, sandbox: SandboxRecord) -> None:
    """StopPodSandbox, RemovePodSandbox: a plugin's error is only logged."""
    try:
        await pod_event(app, event, sandbox)
    except errors.CriError as exc:
        log.warning("%s", exc)


_CONTAINER_EVENTS: dict[int, tuple[str, Any, Any]] = {
    api.POST_CREATE_CONTAINER: ("PostCreateContainer", api.PostCreateContainerRequest,
                                api.PostCreateContainerResponse),
    api.START_CONTAINER: ("StartContainer", api.StartContainerRequest, api.StartContainerResponse),
    api.POST_START_CONTAINER: ("PostStartContainer", api.PostStartContainerRequest, api.PostStartContainerResponse),
    api.REMOVE_CONTAINER: ("RemoveContainer", api.RemoveContainerRequest, api.RemoveContainerResponse),
    api.POST_UPDATE_CONTAINER: ("PostUpdateContainer", api.PostUpdateContainerRequest,
                                api.PostUpdateContainerResponse),
}
_POD_EVENTS: dict[int, tuple[str, Any, Any]] = {
    api.RUN_POD_SANDBOX: ("RunPodSandbox", api.RunPodSandboxRequest, api.RunPodSandboxResponse),
    api.STOP_POD_SANDBOX: ("StopPodSandbox", api.StopPodSandboxRequest, api.StopPodSandboxResponse),
    api.REMOVE_POD_SANDBOX: ("RemovePodSandbox", api.RemovePodSandboxRequest, api.RemovePodSandboxResponse),
}


async def post_event(app: App, event: int, rec: ContainerRecord) -> None:
    """An event after the fact (PostCreate, PostStart, Remove): a plugin's error is only logged."""
    try:
        await container_event(app, event, rec)
    except errors.CriError as exc:
        log.warning("%s", exc)
