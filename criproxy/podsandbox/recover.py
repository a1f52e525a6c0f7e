"""Rebuilding the sandbox cache at start-up, before the readiness gate opens.

Assumptions this relies on (containerd's restart.go keeps a list like this one):
- every sandbox criproxy made is a containerd container in criproxy's namespace labelled
  ``io.cri-containerd.kind=sandbox``, whose ``io.cri-containerd.sandbox.metadata`` extension holds the
  config, name, netns path and (once known) IP and CNI result;
- ``<root>/sandboxes/<id>/network.json`` holds the network facts from before ADD, after ADD and after
  DEL, so it is the authority on whether DEL still has to run, and fills in the IP when criproxy died
  between ADD and the extension update;
- the pause task's state decides READY (running) vs NOTREADY (exited, missing, or never started);
- a sandbox directory with no container record is the leftover of a RunPodSandbox that died half way:
  its network is torn down and its files removed in the background.
"""

from __future__ import annotations

import contextlib
import logging

from criproxy import errors
from criproxy.app import App
from criproxy.labels import KIND, KIND_SANDBOX, SANDBOX_METADATA
from criproxy.network import cni, netns, pod
from criproxy.podsandbox import events as sandbox_events
from criproxy.podsandbox import files as sandbox_files
from criproxy.podsandbox import network as sandbox_network
from criproxy.podsandbox import pause as sandbox_pause
from criproxy.protos import containers_pb, cri, task_types, tasks_pb
from criproxy.state.lookup import is_object_id
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t

log = logging.getLogger("criproxy.sandbox.recover")
SANDBOX_FILTER = f'labels."{KIND}"=={KIND_SANDBOX}'


async def recover_sandboxes(app: App) -> None:
    try:   # once, here, rather than racing in the first concurrent netns creations
        netns.ensure_shared_dir(app.config.netns_dir)
    except (OSError, netns.NetnsError) as e:
        log.warning("netns dir %s: %s", app.config.netns_dir, e)
    containers = (await app.ctrd.containers.List(containers_pb.ListContainersRequest(filters=[SANDBOX_FILTER]))
                  ).containers
    tasks = {p.id: p for p in (await app.ctrd.tasks.List(tasks_pb.ListTasksRequest())).tasks}
    for c in containers:
        rec = record_of(c)
        if rec is None:
            continue
        confine_dirs(app, rec)
        restore_network_facts(rec)
        adopt(app, rec, tasks.get(rec.id))
    known = {rec.id for rec in app.sandboxes.all()}
    orphans = [d.name for d in (app.config.root / "sandboxes").glob("*")
               if d.name not in known and is_object_id(d.name)]
    if orphans:
        app.spawn(clean_orphans(app, orphans), "sandbox-orphans")
    log.info("recovered %d pod sandboxes (%d ready)", len(app.sandboxes),
             sum(1 for r in app.sandboxes.all() if r.ready))


async def relist_sandboxes(app: App) -> None:
    """Correct what a missed exit left behind: a READY sandbox whose pause task no longer runs."""
    ready = [rec for rec in app.sandboxes.all() if rec.ready and rec.stopping is None]
    if not ready:
        return
    tasks = {p.id: p for p in (await app.ctrd.tasks.List(tasks_pb.ListTasksRequest())).tasks}
    for rec in ready:
        task = tasks.get(rec.id)
        if rec.ready and (task is None or task.status == task_types.STOPPED):
            log.info("pause task of sandbox %s is gone; marking it NOTREADY", rec.id)
            sandbox_events.mark_notready(app, rec)


def record_of(c: containers_pb.Container) -> SandboxRecord | None:
    ext = c.extensions.get(SANDBOX_METADATA)
    if ext is None:
        log.warning("sandbox container %s has no metadata extension; leaving it alone", c.id)
        return None
    try:
        rec = t.record_from_metadata(ext.value, c.created_at.ToNanoseconds())
    except (ValueError, KeyError, TypeError) as e:
        log.warning("sandbox container %s: unreadable metadata (%s); leaving it alone", c.id, e)
        return None
    if rec.id != c.id or not is_object_id(rec.id):
        log.warning("sandbox container %r: metadata names ID %r (not this container's, or not 64 hex); "
                    "leaving it alone", c.id[:80], str(rec.id)[:80])
        return None
    rec.runtime = containers_pb.Container.Runtime()   # a copy: not the whole answer kept alive
    rec.runtime.CopyFrom(c.runtime)       # CreateContainer runs the pod's containers on the same
    return rec


def confine_dirs(app: App, rec: SandboxRecord) -> None:
    """The sandbox's directories are where criproxy puts them for this ID, whatever the metadata says:
    they are written to and deleted, so a path read back is never trusted."""
    persistent, volatile = sandbox_files.sandbox_dirs(app, rec.id)
    rec.dir = persistent if rec.dir is not None else None
    rec.state_dir = volatile if rec.state_dir is not None else None


def restore_network_facts(rec: SandboxRecord) -> None:
    """network.json is newer than the extension when criproxy died mid-run or after DEL."""
    st = pod.load(rec.dir) if rec.dir else None
    if st is None:
        return
    rec.network_torn_down = st.torn_down
    if st.result and not rec.cni_result:
        rec.cni_result = st.result
        ips = cni.pod_ips(st.result)
        rec.ip, rec.additional_ips = (ips[0], ips[1:]) if ips else ("", [])


def adopt(app: App, rec: SandboxRecord, task: task_types.Process | None) -> None:
    """READY only when pause runs and (pod network) ADD finished: a run killed between Tasks.Start and
    the end of ADD left a running pause in a half-configured network, which the kubelet must replace."""
    running = task is not None and task.status == task_types.RUNNING
    rec.pid = task.pid if task is not None else 0
    network_done = rec.host_network or rec.cni_result is not None
    if running and network_done:
        app.sandboxes.set_state(rec, cri.SANDBOX_READY)
        sandbox_pause.watch(app, rec)
    else:
        app.sandboxes.set_state(rec, cri.SANDBOX_NOTREADY)
        if running:
            log.warning("sandbox %s: its RunPodSandbox never finished CNI ADD; NOTREADY", rec.id)
    app.sandboxes.add(rec)
    with contextlib.suppress(errors.AlreadyExists):
        app.sandbox_names.reserve(rec.name, rec.id)


async def clean_orphans(app: App, ids: list[str]) -> None:
    """Undo RunPodSandbox calls that died before their container record existed."""
    for sid in ids:
        persistent, _ = sandbox_files.sandbox_dirs(app, sid)
        st = pod.load(persistent)
        try:
            if st is not None and not st.torn_down:
                rec = SandboxRecord(id=sid, name="", config=cri.PodSandboxConfig(), runtime_handler="",
                                    created_at=0, netns_path=st.netns, dir=persistent)
                await sandbox_network.teardown(app, rec)
            elif st is not None:
                netns.remove(st.netns)
            await sandbox_pause.remove_snapshot(app, sid)
            sandbox_files.remove(app, sid)
            log.info("cleaned up half-created sandbox %s", sid)
        except errors.CriError as e:
            log.warning("cleaning up half-created sandbox %s: %s (will retry at next start)", sid, e)
