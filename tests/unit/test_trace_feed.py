"""The translation trace as shown: key arguments of containerd requests, the live feed's bounded
queues, ``criproxy trace``'s text and ``criproxy ui``'s listen rule."""

from __future__ import annotations

import pytest

from criproxy import observability, trace
from criproxy.protos import containers_pb, cri, snapshots_pb, tasks_pb
from criproxy.ui import trace_cmd, web


def test_key_args_of_real_requests() -> None:
    assert trace.key_args(tasks_pb.CreateTaskRequest(container_id="abc"), None) == {"container_id": "abc"}
    prep = snapshots_pb.PrepareSnapshotRequest(snapshotter="overlayfs", key="k1", parent="sha256:p")
    assert trace.key_args(prep, "lease-1") == {"key": "k1", "parent": "sha256:p", "snapshotter": "overlayfs",
                                               "lease": "lease-1"}
    create = containers_pb.CreateContainerRequest(container=containers_pb.Container(id="c1"))
    assert trace.key_args(create, None) == {"container.id": "c1"}
    assert trace.key_args(None, None) == {}
    assert trace.key_args({"ref": "r", "digest": ""}, None) == {"ref": "r"}
    assert len(trace.key_args(tasks_pb.CreateTaskRequest(container_id="x" * 500), None)["container_id"]) \
        == trace.MAX_ARG


def _trace(rpc: str, pod: str = "") -> trace.Trace:
    tr = trace.Trace(rpc)
    tr.request = cri.StopPodSandboxRequest(pod_sandbox_id=pod)
    tr.record("Tasks", "Kill", tr.started, "OK", tasks_pb.KillRequest(container_id=pod))
    return tr


def test_kept_traces_reach_subscribers_and_slow_ones_lose_the_oldest() -> None:
    obs = observability.Observer(keep=10)
    obs.observe(_trace("StopPodSandbox", "p0"), "OK", 0.01)
    sub = obs.subscribe()
    assert sub is not None and [e["pod"] for e in sub.queue] == ["p0"]      # primed with the ring
    for i in range(observability.SUBSCRIBER_QUEUE + 5):
        obs.observe(_trace("StopPodSandbox", f"p{i + 1}"), "OK", 0.01)
    assert len(sub.queue) == observability.SUBSCRIBER_QUEUE and sub.dropped == 6 and obs.dropped == 6
    assert sub.queue[-1]["pod"] == f"p{observability.SUBSCRIBER_QUEUE + 5}"
    assert sub.queue[0]["steps"][0][4] == {"container_id": sub.queue[0]["pod"]}
    ids = [e["id"] for e in sub.queue]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    obs.observe(trace.Trace("ListPodSandbox"), "OK", 0.001)       # no containerd call, OK: not kept
    assert sub.queue[-1]["rpc"] == "StopPodSandbox"
    obs.unsubscribe(sub)
    subs = [obs.subscribe() for _ in range(observability.MAX_SUBSCRIBERS + 1)]
    assert subs[-1] is None and all(s is not None for s in subs[:-1])


def test_error_message_and_render() -> None:
    obs = observability.Observer()
    obs.observe(_trace("StopPodSandbox", "a" * 64), "NOT_FOUND", 0.0123, "pod sandbox not found")
    entry = obs.recent[-1]
    text = trace_cmd.render(entry)
    head, *rest = text.splitlines()
    assert "StopPodSandbox NOT_FOUND 12.3ms pod=" + "a" * 12 in head
    assert rest[0] == "    error: pod sandbox not found"
    assert "Tasks.Kill OK  container_id=" + "a" * 12 in rest[1]


@pytest.mark.parametrize(("listen", "remote", "want"), [
    ("127.0.0.1:0", False, ("127.0.0.1", 0)), ("localhost:8089", False, ("127.0.0.1", 8089)),
    ("[::1]:9", False, ("::1", 9)), ("0.0.0.0:80", True, ("0.0.0.0", 80)),
])
def test_listen_accepted(listen: str, remote: bool, want: tuple[str, int]) -> None:
    assert web.parse_listen(listen, remote) == want


@pytest.mark.parametrize("listen", ["0.0.0.0:80", "10.1.2.3:80", "example:80", "127.0.0.1", "127.0.0.1:99999"])
def test_listen_refused(listen: str) -> None:
    with pytest.raises(ValueError):
        web.parse_listen(listen, False)


def test_page_is_self_contained() -> None:
    html = web.page()
    assert "http://" not in html and "https://" not in html and "<script src" not in html


async def test_events_stream_live_and_stop_with_a_reader_open(tmp_path: object) -> None:
    import asyncio
    import json
    from pathlib import Path

    obs = observability.Observer()
    obs.observe(_trace("StopPodSandbox", "before"), "OK", 0.01)
    server = observability.DebugServer(obs, Path(str(tmp_path)) / "debug.sock")
    await server.start()
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b"GET /events HTTP/1.1\r\nHost: criproxy\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"200 OK" in head and b"text/event-stream" in head

    async def next_entry() -> dict[str, object]:
        while True:
            line = await asyncio.wait_for(reader.readline(), 5)
            if line.startswith(b"data: "):
                entry: dict[str, object] = json.loads(line[6:])
                return entry

    assert (await next_entry())["pod"] == "before"         # the ring first
    obs.observe(_trace("StopPodSandbox", "live"), "OK", 0.01)
    assert (await next_entry())["pod"] == "live"           # then as it happens
    await asyncio.wait_for(server.stop(), 5)               # an open reader does not hold the stop
    assert (await asyncio.wait_for(reader.read(), 5)).strip() == b""   # then EOF
    assert not obs.subscribers
    writer.close()
