"""ContainerStatus: from the cache (the answer itself is kept until the record changes); ``verbose``
adds the runtime spec, read from containerd once and kept on the record."""

from __future__ import annotations

import json
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import containers_pb, cri
from criproxy.translate import container as t


@rpc("ContainerStatus")
async def container_status(app: App, request: cri.ContainerStatusRequest) -> cri.ContainerStatusResponse | bytes:
    rec = app.containers.get(request.container_id)
    if not request.verbose:
        raw = rec.handles.cached_status_bytes
        if raw is None:
            raw = rec.handles.cached_status_bytes = t.status_response(rec).SerializeToString()
        assert isinstance(raw, bytes)
        return raw                        # the edge sends pre-serialized answers as they are
    resp = cri.ContainerStatusResponse(status=t.to_cri_status(rec))
    if request.verbose:
        spec: dict[str, Any] | None = None
        if rec.handles.spec_json is None:
            try:
                c = (await app.ctrd.containers.Get(containers_pb.GetContainerRequest(id=rec.id))).container
                rec.handles.spec_json = c.spec.value
            except errors.NotFound:
                pass
        if rec.handles.spec_json is not None:
            spec = json.loads(rec.handles.spec_json)
        resp.info.update(t.verbose_info(rec, spec))
    return resp
