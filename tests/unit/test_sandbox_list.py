"""ListPodSandbox from the cache: cached serialized answers follow every store change."""

from __future__ import annotations

from pathlib import Path

from criproxy.app import App
from criproxy.config import load
from criproxy.containerd import Containerd
from criproxy.cri.sandbox_list import list_pod_sandbox
from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord


def _rec(i: int, state: int, labels: dict[str, str] | None = None) -> SandboxRecord:
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name=f"p{i}", namespace="n", uid=f"u{i}"),
                               labels=labels or {})
    return SandboxRecord(id=f"{i:064x}", name=f"p{i}_n_u{i}_0", config=cfg, runtime_handler="", created_at=i,
                         state=state)


async def _ids(app: App, flt: cri.PodSandboxFilter | None = None) -> list[str]:
    req = cri.ListPodSandboxRequest(filter=flt) if flt is not None else cri.ListPodSandboxRequest()
    resp = await list_pod_sandbox(app, req)
    if isinstance(resp, bytes):
        resp = cri.ListPodSandboxResponse.FromString(resp)
    return sorted(i.id for i in resp.items)


async def test_cached_answers_follow_changes(tmp_path: Path) -> None:
    app = App(config=load(None, {}), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))
    a, b = _rec(1, cri.SANDBOX_READY, {"x": "1"}), _rec(2, cri.SANDBOX_READY)
    app.sandboxes.add(a)
    assert await _ids(app) == [a.id]
    app.sandboxes.add(b)
    ready = cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY))
    notready = cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_NOTREADY))
    assert await _ids(app) == [a.id, b.id] and await _ids(app, ready) == [a.id, b.id]
    app.sandboxes.set_state(b, cri.SANDBOX_NOTREADY)
    assert await _ids(app, ready) == [a.id] and await _ids(app, notready) == [b.id]
    assert await _ids(app, cri.PodSandboxFilter(label_selector={"x": "1"})) == [a.id]
    assert await _ids(app, cri.PodSandboxFilter(id=b.id)) == [b.id]
    assert await _ids(app, cri.PodSandboxFilter()) == [a.id, b.id]
    app.sandboxes.remove(a.id)
    assert await _ids(app) == [b.id] and await _ids(app, ready) == []
    await app.ctrd.close()
