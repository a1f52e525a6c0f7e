"""ListContainers and StreamContainers: straight from the cache.

kubelet calls ListContainers every second, so the unfiltered (and state-only) answer is kept
serialized and rebuilt only when the store's generation moved; each record keeps its own
``cri.Container`` until its status changes. Other filters walk the records (no containerd call either
way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.state.container import ContainerRecord
from criproxy.translate import container as t

STREAM_CHUNK = 500


def item(rec: ContainerRecord) -> cri.Container:
    c = rec.handles.cached_item
    if c is None:
        c = rec.handles.cached_item = t.to_cri_container(rec)
    assert isinstance(c, cri.Container)
    return c


def _is_empty(flt: cri.ContainerFilter) -> bool:
    return not (flt.id or flt.pod_sandbox_id or flt.label_selector or flt.HasField("state"))


def select(app: App, flt: cri.ContainerFilter) -> list[cri.Container]:
    if _is_empty(flt):
        return [item(r) for r in app.containers.values()]
    return [item(r) for r in app.containers.values() if t.matches(r, flt)]


def _state_only(flt: cri.ContainerFilter) -> bool:
    return flt.HasField("state") and not (flt.id or flt.pod_sandbox_id or flt.label_selector)


def _serialized(app: App, state: int | None) -> bytes:
    """The answer for "all" (None) or "only this state", serialized once per store generation."""
    gen = app.containers.generation
    cached = app.container_list
    if cached is None or cached[0] != gen:
        cached = app.container_list = (gen, {})
    by_state = cached[1]
    out = by_state.get(state)
    if out is None:
        items = [item(r) for r in app.containers.values() if state is None or r.state == state]
        out = by_state[state] = cri.ListContainersResponse(containers=items).SerializeToString()
    return out


@rpc("ListContainers")
async def list_containers(app: App, request: cri.ListContainersRequest) -> cri.ListContainersResponse | bytes:
    """Pre-serialized answers (the edge sends bytes as they are) for no filter and state-only filters."""
    flt = request.filter
    if _is_empty(flt):
        return _serialized(app, None)
    if _state_only(flt):
        return _serialized(app, flt.state.state)
    return cri.ListContainersResponse(containers=select(app, flt))


@rpc("StreamContainers")
async def stream_containers(app: App, request: cri.StreamContainersRequest) -> AsyncIterator[
        cri.StreamContainersResponse]:
    items = select(app, request.filter)
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamContainersResponse(containers=items[i:i + STREAM_CHUNK])
