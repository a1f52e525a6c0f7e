"""criproxy's state as NRI sees it, and NRI's container updates carried out as CRI updates.

criproxy.nri knows the protocol; this module knows criproxy: it turns sandbox and container records
into NRI ``PodSandbox`` and ``Container`` messages (for Synchronize and events), applies a plugin's
``ContainerUpdate`` through UpdateContainerResources (only the fields containerd applies: memory
limit, CPU shares/period/quota, cpuset CPUs/mems, hugepage limits, unified), and starts and stops
the NRI listener when ``nri_enable`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from criproxy import __version__, errors
from criproxy._gen.nri import api_pb2 as api
from criproxy.app import App
from criproxy.cri import container_update
from criproxy.nri.adaptation import Adaptation, Settings
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


async def apply_updates(app: App, updates: Sequence[api.ContainerUpdate]) -> list[api.ContainerUpdate]:
    """Carry out each update as UpdateContainerResources; the ones that failed (unless they asked to
    have failures ignored)."""
    failed: list[api.ContainerUpdate] = []
    for u in updates:
        try:
            await container_update.update_container_resources(app, cri.UpdateContainerResourcesRequest(
                container_id=u.container_id, linux=cri_resources(u.linux.resources)))
        except errors.CriError as exc:
            log.warning("NRI: update of container %s failed: %s", u.container_id, exc)
            if not u.ignore_failure:
                failed.append(u)
    return failed


async def start(app: App) -> None:
    """Listen for NRI plugins when the configuration enables it."""
    cfg = app.config
    if not cfg.nri_enable:
        return
    settings = Settings(socket=cfg.nri_socket, registration_timeout=cfg.nri_plugin_registration_timeout,
                        request_timeout=cfg.nri_plugin_request_timeout, runtime_name="criproxy",
                        runtime_version=__version__)
    nri = Adaptation(settings, lambda: snapshot(app), lambda updates: apply_updates(app, updates))
    try:
        await nri.start()
    except OSError as exc:
        raise errors.StartupError(f"cannot listen for NRI plugins on {cfg.nri_socket}: {exc}") from None
    app.nri = nri


async def stop(app: App) -> None:
    if app.nri is not None:
        await app.nri.stop()
        app.nri = None
