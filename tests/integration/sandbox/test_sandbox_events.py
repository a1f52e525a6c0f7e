"""Sandbox lifecycle as CRI container events (evented PLEG) and container statuses in PodSandboxStatus."""

from __future__ import annotations

import threading
import time

from criproxy.protos import cri
from tests.integration.sandbox.conftest import Pods, pod_config
from tests.integration.sandbox.test_sandbox_recovery import _kill_pause, _wait_state


def test_sandbox_events(pods: Pods) -> None:
    stream = pods.client.runtime.GetContainerEvents(cri.GetEventsRequest())
    seen: list[cri.ContainerEventResponse] = []

    def read() -> None:
        try:
            for ev in stream:
                seen.append(ev)
        except Exception:  # the stream is cancelled at the end
            pass
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)  # the subscription is registered once the call reached the server
    sid = pods.run(pod_config("events"))
    _kill_pause(pods, sid)
    _wait_state(pods, sid, cri.SANDBOX_NOTREADY)
    pods.stop(sid)
    pods.remove(sid)
    deadline = time.monotonic() + 5
    kinds: list[int] = []
    while time.monotonic() < deadline:
        kinds = [e.container_event_type for e in seen if e.container_id == sid]
        if cri.CONTAINER_DELETED_EVENT in kinds:
            break
        time.sleep(0.05)
    stream.cancel()
    assert kinds == [cri.CONTAINER_CREATED_EVENT, cri.CONTAINER_STARTED_EVENT, cri.CONTAINER_STOPPED_EVENT,
                     cri.CONTAINER_DELETED_EVENT]
    started = next(e for e in seen if e.container_id == sid and e.container_event_type == cri.CONTAINER_STARTED_EVENT)
    assert started.pod_sandbox_status.id == sid and started.pod_sandbox_status.state == cri.SANDBOX_READY
    assert started.pod_sandbox_status.network.ip


def test_status_timestamp_and_container_statuses(pods: Pods) -> None:
    sid = pods.run(pod_config("st"))
    resp = pods.status(sid)
    assert resp.timestamp > 0 and list(resp.containers_statuses) == []
