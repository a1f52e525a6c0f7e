"""Drive one pod case through one CRI (criproxy or the built-in) and collect what to compare.

``Side`` is one runtime: its CRI client, its containerd namespace and the dirs it keeps files in.
``run_pod`` makes the pod and its containers, waits for the probes, and returns every ID, error
code, probe output and CRI status; ``fetch`` reads both runtimes' container records and specs from
containerd; ``documents`` turns one case into the JSON documents the diff compares, normalised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from criproxy.containerd.client import Containerd
from criproxy.parity import Normaliser, parse_probe, probe_document
from criproxy.parity.probe import cri_log_text
from criproxy.parity.spec import fetch_container
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.proc import free_port
from tests.parity.matrix import Ctx, PodCase, container_config

PROBE_TIMEOUT = 120.0  # for all probes of a pod to exit
LOG_TRAIL = 20.0       # for one exited probe's output to reach its log


@dataclass
class Side:
    name: str
    client: CriClient
    address: str
    namespace: str
    dirs: list[str]
    log_root: Path
    images: dict[str, str]


@dataclass
class CtrResult:
    name: str
    id: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # CRI call -> status code name
    probe: bool = True
    log: Path | None = None
    output: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class PodResult:
    side: Side
    case: PodCase
    id: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    ip: str = ""
    log_dir: Path | None = None
    status: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    containers: list[CtrResult] = field(default_factory=list)


def _code(e: grpc.RpcError) -> str:
    return str(e.code().name) if hasattr(e, "code") else type(e).__name__


def _status_doc(msg: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    doc = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    for key in ("created_at", "started_at", "finished_at"):
        if key in doc:
            doc[key] = "<time>"
    for key in drop:
        doc.pop(key, None)
    return doc


def pod_config(case: PodCase, side: Side, uid: str, ctx: Ctx) -> cri.PodSandboxConfig:
    log_dir = side.log_root / case.name
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=f"parity-{case.name}", namespace="default", uid=uid, attempt=0),
        hostname=f"parity-{case.name}", log_directory=str(log_dir),
        labels={"io.kubernetes.pod.name": f"parity-{case.name}", "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.uid": uid},
        annotations={"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2026-01-01T00:00:00Z"})
    if case.dns:
        cfg.dns_config.CopyFrom(cri.DNSConfig(servers=["127.0.0.1"], searches=["default.svc.cluster.local",
                                                                                "svc.cluster.local"],
                                              options=["ndots:5"]))
    if case.ports:
        cfg.port_mappings.append(cri.PortMapping(protocol=cri.TCP, container_port=8080, host_port=free_port(),
                                                 host_ip="127.0.0.1"))
    if case.cgroup_parent:
        cfg.linux.cgroup_parent = cgroup_parent(uid)
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    case.change(cfg, ctx)
    return cfg


def cgroup_parent(uid: str) -> str:
    return f"/parity-{uid[:8]}/pod{uid}"


def run_pod(res: PodResult, uid: str, scratch: Path) -> None:
    """RunPodSandbox, then create and start each container in order; refusals are recorded.

    ``res`` is filled in as things are made, so the caller can clean up after a failure half way.
    """
    side, case = res.side, res.case
    rt = side.client.runtime
    ctx = Ctx(ids={}, scratch=scratch, side=side.name)
    cfg = pod_config(case, side, uid, ctx)
    res.log_dir = Path(cfg.log_directory)
    try:
        res.id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg, runtime_handler=case.runtime_handler),
                                  timeout=120).pod_sandbox_id
    except grpc.RpcError as e:
        res.errors["RunPodSandbox"] = _code(e)
        return
    st = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=res.id)).status
    res.ip = st.network.ip
    res.status = _status_doc(st, drop=("id",))
    for ccase in case.containers:
        c = CtrResult(ccase.name, probe=ccase.probe)
        res.containers.append(c)
        ccfg = container_config(ccase, side.images[ccase.image], ctx)
        try:
            c.id = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=res.id, config=ccfg,
                                                                 sandbox_config=cfg), timeout=60).container_id
            ctx.ids[ccase.name] = c.id
            c.log = res.log_dir / ccfg.log_path
            rt.StartContainer(cri.StartContainerRequest(container_id=c.id), timeout=60)
        except grpc.RpcError as e:
            c.errors["StartContainer" if c.id else "CreateContainer"] = _code(e)


def wait_probes(res: PodResult) -> None:
    """Wait for every started probe to exit and read its output from the CRI log."""
    rt = res.side.client.runtime
    deadline = time.monotonic() + PROBE_TIMEOUT
    for c in res.containers:
        if not c.id:
            continue
        while True:
            st = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=c.id)).status
            if not c.probe or st.state == cri.CONTAINER_EXITED:
                break
            if time.monotonic() > deadline:
                c.errors["probe"] = "did not exit"
                break
            time.sleep(0.1)
        if c.probe and c.log is not None:
            log_deadline = time.monotonic() + LOG_TRAIL  # the log may trail the exit (a loaded host)
            while True:
                text = cri_log_text(c.log.read_text(errors="replace")) if c.log.exists() else ""
                if "### end" in text or time.monotonic() > log_deadline:
                    break
                time.sleep(0.1)
            c.output = text
        c.status = _status_doc(st, drop=("id",))


async def _fetch_side(res: PodResult) -> None:
    ctrd = Containerd(res.side.address, res.side.namespace)
    try:
        if res.id:
            res.spec, res.record = await fetch_container(ctrd, res.id)
        for c in res.containers:
            if c.id:
                c.spec, c.record = await fetch_container(ctrd, c.id)
    finally:
        await ctrd.close()


def fetch(*results: PodResult) -> None:
    async def all_sides() -> None:
        await asyncio.gather(*(_fetch_side(r) for r in results))
    asyncio.run(all_sides())


def cleanup(res: PodResult) -> None:
    rt = res.side.client.runtime
    if res.id:
        with contextlib.suppress(grpc.RpcError):
            rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=res.id), timeout=60)
            rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=res.id), timeout=60)


def remove_cgroup_parent(uid: str) -> None:
    """The kubelet owns pod-level cgroups; here the test does: remove the empty parents it named."""
    rel = cgroup_parent(uid).lstrip("/")
    for h in Path("/sys/fs/cgroup").iterdir():
        for d in (h / rel, (h / rel).parent):
            with contextlib.suppress(OSError):
                d.rmdir()


def _netns_path(spec: dict[str, Any]) -> str:
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network":
            return str(ns.get("path") or "")
    return ""


def mount_relative(path: str) -> str | None:
    """``path`` relative to the mount it lives on, as mountinfo's root field shows it, if different."""
    p = Path(path)
    try:
        dev = p.stat().st_dev
    except OSError:
        return None
    top = p
    while top.parent != top and top.parent.stat().st_dev == dev:
        top = top.parent
    if top == Path("/"):
        return None
    return "/" + os.path.relpath(p, top)


def normaliser(res: PodResult) -> Normaliser:
    side = res.side
    literals = {res.id: "<pod>"} if res.id else {}
    for c in res.containers:
        if c.id:
            literals[c.id] = f"<ctr.{c.name}>"
    netns = _netns_path(res.spec)
    if netns:
        literals[netns] = "<netns>"
    if res.ip:
        literals[res.ip] = "<pod-ip>"
    if res.log_dir is not None:
        literals[str(res.log_dir)] = "<log-dir>"
    dirs = list(side.dirs)
    dirs += [r for d in side.dirs if (r := mount_relative(d))]
    return Normaliser(literals, dirs, side.namespace)


def documents(res: PodResult, name: str) -> dict[str, Any]:
    """The documents of one case (``sandbox`` or a container name) on this side, normalised."""
    norm = normaliser(res)
    if name == "sandbox":
        doc: dict[str, Any] = {"error": res.errors, "spec": res.spec, "record": res.record,
                               "status": res.status}
        return norm(doc)  # type: ignore[no-any-return]
    c = next((c for c in res.containers if c.name == name), None)
    if c is None:  # the pod itself was refused
        return {"error": res.errors, "spec": {}, "record": {}, "status": {}}
    doc = {"error": {**res.errors, **c.errors}, "spec": c.spec, "record": c.record, "status": c.status}
    if c.probe:
        doc["probe"] = probe_document(parse_probe(c.output)) if c.output else {}
    return norm(doc)  # type: ignore[no-any-return]
