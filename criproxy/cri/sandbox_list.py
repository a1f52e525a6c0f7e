"""ListPodSandbox and StreamPodSandboxes: answered from the cache, cheaply.

The kubelet lists every second, so the unfiltered answer is kept as one serialized response until the
store's generation changes (a sandbox added, removed or changing state); per-record list items are
cached the same way. Filtered lists reuse the cached items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t

CACHE = "sandbox.list_cache"
STREAM_CHUNK = 500


def _items(app: App) -> tuple[list[tuple[SandboxRecord, cri.PodSandbox]], bytes]:
    """(record, item) pairs and the full response, serialized, rebuilt only when the store changed."""
    cached = app.parts.get(CACHE)
    if cached is not None and cached[0] == app.sandboxes.generation:
        return cached[1], cached[2]
    pairs = [(rec, t.to_cri_item(rec)) for rec in app.sandboxes.all()]
    full = cri.ListPodSandboxResponse(items=[item for _, item in pairs]).SerializeToString()
    app.parts[CACHE] = (app.sandboxes.generation, pairs, full)
    return pairs, full


def _filtered(app: App, flt: cri.PodSandboxFilter | None) -> list[cri.PodSandbox]:
    pairs, _ = _items(app)
    if flt is None:
        return [item for _, item in pairs]
    return [item for rec, item in pairs if t.matches(rec, flt)]


@rpc("ListPodSandbox")
async def list_pod_sandbox(app: App, request: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse | bytes:
    if not request.HasField("filter"):
        return _items(app)[1]      # already serialized: the edge sends bytes as they are
    return cri.ListPodSandboxResponse(items=_filtered(app, request.filter))


@rpc("StreamPodSandboxes")
async def stream_pod_sandboxes(app: App, request: cri.StreamPodSandboxesRequest
                               ) -> AsyncIterator[cri.StreamPodSandboxesResponse]:
    items = _filtered(app, request.filter if request.HasField("filter") else None)
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamPodSandboxesResponse(pod_sandboxes=items[i:i + STREAM_CHUNK])
