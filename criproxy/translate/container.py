"""Pure conversions for containers: records ↔ CRI messages ↔ containerd labels and extensions.

No I/O: shared by the RPC modules, the event relay and recovery, and unit-tested directly.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from criproxy import errors
from criproxy.labels import KIND, KIND_CONTAINER, RESERVED_PREFIXES, SANDBOX_ID
from criproxy.protos import cri
from criproxy.state.container import ContainerMetadata, ContainerRecord, exit_reason

METADATA_TYPE_URL = "github.com/containerd/cri/pkg/store/container/Metadata"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
CRIPROXY_KEY = "Criproxy"


def container_name(meta: cri.ContainerMetadata, pod: cri.PodSandboxMetadata) -> str:
    """The CRI name kubelet retries under: ``<ctr>_<pod>_<namespace>_<uid>_<attempt>``."""
    return f"{meta.name}_{pod.name}_{pod.namespace}_{pod.uid}_{meta.attempt}"


def containerd_labels(config: cri.ContainerConfig, image_labels: dict[str, str], sandbox_id: str) -> dict[str, str]:
    """Image labels (minus containerd's own), the CRI labels over them, the kind and sandbox markers."""
    labels = {k: v for k, v in image_labels.items()
              if k and not k.startswith(RESERVED_PREFIXES) and len(k.encode()) + len(v.encode()) <= 4096}
    labels.update(config.labels)
    labels[KIND] = KIND_CONTAINER
    labels[SANDBOX_ID] = sandbox_id
    return labels


def metadata_json(rec: ContainerRecord) -> bytes:
    """The container metadata extension in containerd CRI's shape, plus what criproxy needs back."""
    m = rec.meta
    cfg = json_format.MessageToDict(m.config, preserving_proto_field_name=True)
    doc = {"Version": "v1", "Metadata": {
        "ID": m.id, "Name": m.name, "SandboxID": m.sandbox_id, "Config": cfg, "ImageRef": m.image_id,
        "LogPath": m.log_path, "StopSignal": m.stop_signal, "ProcessLabel": "",
        CRIPROXY_KEY: {"CreatedAt": m.created_at, "ImageName": m.image_name, "ImageStatusRef": m.image_ref,
                       "User": [m.uid, m.gid, list(m.groups)], "ImageMounts": [list(x) for x in m.image_mounts]},
    }}
    return json.dumps(doc, separators=(",", ":")).encode()


def record_from_metadata(raw: bytes, created_at: int) -> ContainerRecord:
    """Rebuild a record from the extension (status comes from the status file and the task)."""
    meta = json.loads(raw)["Metadata"]
    own: dict[str, Any] = meta.get(CRIPROXY_KEY) or {}
    config = json_format.ParseDict(meta.get("Config") or {}, cri.ContainerConfig(), ignore_unknown_fields=True)
    uid, gid, groups = own.get("User") or [0, 0, []]
    return ContainerRecord(ContainerMetadata(
        id=meta["ID"], name=meta["Name"], sandbox_id=meta["SandboxID"], config=config,
        created_at=int(own.get("CreatedAt") or created_at), image_name=own.get("ImageName") or config.image.image,
        image_id=meta.get("ImageRef", ""), image_ref=own.get("ImageStatusRef") or meta.get("ImageRef", ""),
        log_path=meta.get("LogPath", ""), stop_signal=meta.get("StopSignal") or "SIGTERM",
        uid=int(uid), gid=int(gid), groups=tuple(int(g) for g in groups),
        image_mounts=tuple((str(a), str(b), str(c), str(d)) for a, b, c, d in own.get("ImageMounts") or [])))


def to_cri_container(rec: ContainerRecord) -> cri.Container:
    """The ListContainers entry."""
    cfg = rec.config
    return cri.Container(
        id=rec.id, pod_sandbox_id=rec.sandbox_id, metadata=cfg.metadata, image=_image_spec(rec),
        image_ref=rec.meta.image_id, state=rec.state, created_at=rec.created_at,  # type: ignore[arg-type]
        labels=cfg.labels, annotations=cfg.annotations, image_id=rec.meta.image_id)


def _image_spec(rec: ContainerRecord) -> cri.ImageSpec:
    return cri.ImageSpec(image=rec.meta.image_name, annotations=rec.config.image.annotations,
                         user_specified_image=rec.config.image.user_specified_image or rec.config.image.image)


def applied_resources(rec: ContainerRecord) -> cri.LinuxContainerResources:
    """What the spec applies (``spec_resources``), or the request as sent when the spec is not known."""
    return rec.handles.applied if rec.handles.applied is not None else rec.resources


def spec_resources(process: object, res: object) -> cri.LinuxContainerResources | None:
    """What an OCI spec's process and linux.resources apply, as containerd's CRI reports it: the
    clamped oom_score_adj, the swap limit it derived, no hugepage limits where the controller is
    missing; None for no resources or a spec not of our making (recovery)."""
    if not isinstance(res, dict):
        return None
    out = cri.LinuxContainerResources()
    try:
        if isinstance(process, dict) and "oomScoreAdj" in process:
            out.oom_score_adj = int(process["oomScoreAdj"])
        cpu, mem = res.get("cpu") or {}, res.get("memory") or {}
        out.cpu_period, out.cpu_quota, out.cpu_shares = cpu.get("period", 0), cpu.get("quota", 0), cpu.get("shares", 0)
        out.cpuset_cpus, out.cpuset_mems = cpu.get("cpus", ""), cpu.get("mems", "")
        out.memory_limit_in_bytes, out.memory_swap_limit_in_bytes = mem.get("limit", 0), mem.get("swap", 0)
        out.hugepage_limits.extend(cri.HugepageLimit(page_size=h["pageSize"], limit=h["limit"])
                                   for h in res.get("hugepageLimits") or [])
        out.unified.update(res.get("unified") or {})
    except (TypeError, ValueError, KeyError, AttributeError):     # a spec not of our making (recovery)
        return None
    return out


def _status_mounts(rec: ContainerRecord) -> list[cri.Mount]:
    """The config's mounts; an image volume's with the host path it got and the image's digest."""
    if not rec.meta.image_mounts:
        return list(rec.config.mounts)
    made = {path: (host, ref) for path, host, _id, ref in rec.meta.image_mounts}
    out = []
    for m in rec.config.mounts:
        if m.container_path in made and m.HasField("image"):
            m = cri.Mount.FromString(m.SerializeToString())
            m.host_path, m.image.image_ref = made[m.container_path]
        out.append(m)
    return out


def to_cri_status(rec: ContainerRecord) -> cri.ContainerStatus:
    """The ContainerStatus kubelet sees: state, times, exit code and reason, image, mounts, user."""
    cfg, s = rec.config, rec.status
    state = rec.state
    reason, message = "", ""
    if state == cri.CONTAINER_EXITED:
        reason, message = exit_reason(s), s.message
    elif state == cri.CONTAINER_UNKNOWN:
        reason, message = "Unknown", s.message
    return cri.ContainerStatus(
        id=rec.id, metadata=cfg.metadata, state=state, created_at=rec.created_at,  # type: ignore[arg-type]
        started_at=s.started_at, finished_at=s.finished_at, exit_code=s.exit_code, image=_image_spec(rec),
        image_ref=rec.meta.image_ref, reason=reason, message=message, labels=cfg.labels, annotations=cfg.annotations,
        mounts=_status_mounts(rec), log_path=rec.log_path, image_id=rec.meta.image_id,
        stop_signal=status_signal(rec.meta.stop_signal),  # type: ignore[arg-type]
        resources=cri.ContainerResources(linux=applied_resources(rec)),
        user=cri.ContainerUser(linux=cri.LinuxContainerUser(uid=rec.meta.uid, gid=rec.meta.gid,
                                                            supplemental_groups=rec.meta.groups)))


def status_response(rec: ContainerRecord) -> cri.ContainerStatusResponse:
    """The non-verbose answer, built once per change of the record (events reuse it too)."""
    cached = rec.handles.cached_status
    if cached is None:
        cached = rec.handles.cached_status = cri.ContainerStatusResponse(status=to_cri_status(rec))
    return cached


def matches(rec: ContainerRecord, flt: cri.ContainerFilter) -> bool:
    """CRI filter semantics: ID prefix, state, sandbox ID prefix, every selector label equal."""
    if flt.id and not rec.id.startswith(flt.id):
        return False
    if flt.HasField("state") and rec.state != flt.state.state:
        return False
    if flt.pod_sandbox_id and not rec.sandbox_id.startswith(flt.pod_sandbox_id):
        return False
    labels = rec.config.labels
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def stats_matches(rec: ContainerRecord, flt: cri.ContainerStatsFilter) -> bool:
    if flt.id and not rec.id.startswith(flt.id):
        return False
    if flt.pod_sandbox_id and not rec.sandbox_id.startswith(flt.pod_sandbox_id):
        return False
    labels = rec.config.labels
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def verbose_info(rec: ContainerRecord, spec: dict[str, Any] | None) -> dict[str, str]:
    """ContainerStatus(verbose) ``info``: one JSON document like containerd's, under key "info"."""
    info = {"sandboxID": rec.sandbox_id, "pid": rec.status.pid, "removing": rec.handles.removing,
            "snapshotKey": rec.id, "runtimeSpec": spec,
            "config": json_format.MessageToDict(rec.config, preserving_proto_field_name=True)}
    return {"info": json.dumps(info)}


SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6, "SIGBUS": 7,
    "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14,
    "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20,
    "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27,
    "SIGWINCH": 28, "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31, "SIGRTMIN": 34, "SIGRTMAX": 64,
}


def signal_number(name: str) -> int:
    """A signal name (``SIGTERM``, ``TERM``, ``15``, ``SIGRTMIN+3``) as a number; SIGTERM if unknown."""
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    for base, sign in (("SIGRTMIN+", 1), ("SIGRTMAX-", -1)):
        if name.startswith(base) and name[len(base):].isdigit():
            return SIGNALS[base[:-1]] + sign * int(name[len(base):])
    return SIGNALS.get(name, 15)


def cri_signal_name(sig: int) -> str:
    """The CRI Signal enum (``SIGNAL_SIGTERM``) as a name (``SIGTERM``); "" for runtime default."""
    if not sig:
        return ""
    try:
        name = cri.Signal.Name(sig)
    except ValueError:
        raise errors.InvalidArgument(f"stop_signal {sig} is not a CRI Signal value") from None
    name = name.removeprefix("SIGNAL_")
    name = name.replace("RTMINPLUS", "RTMIN+").replace("RTMAXMINUS", "RTMAX-")
    return name


def status_signal(name: str) -> int:
    """A signal name as the CRI Signal enum value (for ContainerStatus.stop_signal)."""
    key = "SIGNAL_" + name.replace("RTMIN+", "RTMINPLUS").replace("RTMAX-", "RTMAXMINUS")
    try:
        return int(cri.Signal.Value(key))
    except ValueError:
        return 0
