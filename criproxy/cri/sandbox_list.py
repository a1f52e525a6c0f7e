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
from criproxy.state.sandbox import SandboxListCache
from criproxy.translate import sandbox as t

STREAM_CHUNK = 500


def _cache(app: App) -> SandboxListCache:
    cached = app.sandbox_list
    if cached is None or cached.generation != app.sandboxes.generation:
        cached = app.sandbox_list = SandboxListCache(
            app.sandboxes.generation, [(rec, t.to_cri_item(rec)) for rec in app.sandboxes.all()])
    return cached


def _serialized(app: App, state: int | None) -> bytes:
    """The answer for "all" (None) or "only this state" — the two lists a kubelet asks for each second."""
    c = _cache(app)
    out = c.serialized.get(state)
    if out is None:
        items = [item for rec, item in c.pairs if state is None or rec.state == state]
        out = c.serialized[state] = cri.ListPodSandboxResponse(items=items).SerializeToString()
    return out


def _filtered(app: App, flt: cri.PodSandboxFilter | None) -> list[cri.PodSandbox]:
    pairs = _cache(app).pairs
    if flt is None:
        return [item for _, item in pairs]
    return [item for rec, item in pairs if t.matches(rec, flt)]


@rpc("ListPodSandbox")
async def list_pod_sandbox(app: App, request: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse | bytes:
    """Pre-serialized answers (the edge sends bytes as they are) for no filter and state-only filters."""
    if not request.HasField("filter"):
        return _serialized(app, None)
    flt = request.filter
    if not flt.id and not flt.label_selector:
        return _serialized(app, flt.state.state if flt.HasField("state") else None)
    return cri.ListPodSandboxResponse(items=_filtered(app, flt))


@rpc("StreamPodSandboxes")
async def stream_pod_sandboxes(app: App, request: cri.StreamPodSandboxesRequest
                               ) -> AsyncIterator[cri.StreamPodSandboxesResponse]:
    items = _filtered(app, request.filter if request.HasField("filter") else None)
    for i in range(0, max(len(items), 1), STREAM_CHUNK):
        yield cri.StreamPodSandboxesResponse(pod_sandboxes=items[i:i + STREAM_CHUNK])
