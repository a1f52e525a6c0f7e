"""ListContainers and StreamContainers: straight from the cache.

kubelet calls ListContainers every second, so the unfiltered answer is kept as one message and
rebuilt only when the store's generation moved; each record keeps its own ``cri.Container`` until its
status changes. A filtered call walks the records (no containerd call either way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.state.container import ContainerRecord
from criproxy.translate import container as t

LIST_CACHE = "containers.list_cache"
STREAM_CHUNK = 500


def item(rec: ContainerRecord) -> cri.Container:
    c = rec.cached_item
    if c is None:
        c = rec.cached_item = t.to_cri_container(rec)
    assert isinstance(c, cri.Container)
    return c


def _is_empty(flt: cri.ContainerFilter) -> bool:
    return not (flt.id or flt.pod_sandbox_id or flt.label_selector or flt.HasField("state"))


def select(app: App, flt: cri.ContainerFilter) -> list[cri.Container]:
    if _is_empty(flt):
        return [item(r) for r in app.containers.values()]
    return [item(r) for r in app.containers.values() if t.matches(r, flt)]


@rpc("ListContainers")
async def list_containers(app: App, request: cri.ListContainersRequest) -> cri.ListContainersResponse:
    if not _is_empty(request.filter):
        return cri.ListContainersResponse(containers=select(app, request.filter))
    cached = app.parts.get(LIST_CACHE)
    gen = app.containers.generation
    if cached is None or cached[0] != gen:
        cached = (gen, cri.ListContainersResponse(containers=select(app, request.filter)))
        app.parts[LIST_CACHE] = cached
    resp: cri.ListContainersResponse = cached[1]
    return resp


@rpc("StreamContainers")
async def stream_containers(app: App, request: cri.StreamContainersRequest) -> AsyncIterator[
        cri.StreamContainersResponse]:
    items = select(app, request.filter)
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamContainersResponse(containers=items[i:i + STREAM_CHUNK])
