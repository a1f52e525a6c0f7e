"""PodSandboxStatus: answered from the cache; ``verbose`` adds the facts an operator debugs with.

The plain answer is kept serialized until a sandbox or container changes (the store generations) or
its network facts do; each call appends only its own ``timestamp`` field to those bytes (a field
appended to a serialized message is part of it).

The verbose ``info`` key holds one JSON document as containerd's CRI plugin does (config, pid, netns
path, CNI result, image, runtime), so ``crictl inspectp`` shows the same kind of detail.
"""

from __future__ import annotations

import json
import time
from typing import Any

from google.protobuf import json_format

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.network import netns
from criproxy.podsandbox import events as sandbox_events
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t


def verbose_info(app: App, rec: SandboxRecord) -> dict[str, str]:
    info = {
        "pid": rec.pid, "processStatus": "running" if rec.ready else "exited",
        "netNamespaceClosed": bool(rec.netns_path) and not netns.is_pinned(rec.netns_path),
        "netnsPath": rec.netns_path, "cniResult": rec.cni_result, "image": rec.image,
        "snapshotKey": rec.id, "snapshotter": t.handler_snapshotter(app.config, rec.runtime_handler),
        "runtimeHandler": rec.runtime_handler,
        "runtimeType": rec.runtime_type, "config": t.config_to_json(rec.config),
        "sandboxDir": str(rec.dir or ""), "exitStatus": rec.exit_status,
        "overhead": _resources(rec.config.linux.overhead), "resources": _resources(rec.config.linux.resources),
    }
    return {"info": json.dumps(info)}


def _resources(r: cri.LinuxContainerResources) -> dict[str, Any]:
    """The pod-level overhead or resources (from RunPodSandbox, or UpdatePodSandboxResources' last
    values) in the CRI's JSON names; {} when none."""
    return json_format.MessageToDict(r)


TIMESTAMP_TAG = b"\x20"          # field 4 (timestamp), varint


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _answer(app: App, rec: SandboxRecord) -> bytes:
    key = (app.sandboxes.generation, app.containers.generation, rec.network_torn_down, rec.ip)
    held = rec.status_answer
    if held is None or held[0] != key:
        raw = cri.PodSandboxStatusResponse(status=t.to_cri_status(rec),
                                           containers_statuses=sandbox_events.container_statuses(app, rec.id)
                                           ).SerializeToString()
        held = rec.status_answer = (key, raw)
    return held[1]


@rpc("PodSandboxStatus")
async def pod_sandbox_status(app: App, request: cri.PodSandboxStatusRequest) -> cri.PodSandboxStatusResponse | bytes:
    rec = app.sandboxes.get(request.pod_sandbox_id)
    if not request.verbose:
        return _answer(app, rec) + TIMESTAMP_TAG + _varint(time.time_ns())
    resp = cri.PodSandboxStatusResponse(status=t.to_cri_status(rec), timestamp=time.time_ns(),
                                        containers_statuses=sandbox_events.container_statuses(app, rec.id))
    resp.info.update(verbose_info(app, rec))
    return resp
