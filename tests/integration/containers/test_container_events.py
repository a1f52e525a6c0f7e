"""GetContainerEvents: created, started, stopped, deleted, in order, with the pod's status."""

from __future__ import annotations

import threading
from typing import Any

from criproxy.protos import cri
from tests.integration.containers.conftest import Pod, wait_for


class Collector:
    """Reads a GetContainerEvents stream in a thread until cancelled."""

    def __init__(self, pod: Pod) -> None:
        self.stream: Any = pod.rt.GetContainerEvents(cri.GetEventsRequest())
        self.events: list[cri.ContainerEventResponse] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                self.events.append(ev)
        except Exception:
            pass

    def of(self, cid: str) -> list[cri.ContainerEventResponse]:
        return [e for e in self.events if e.container_id == cid]

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(5)


def test_events_in_order_with_pod_status(pod: Pod) -> None:
    first = Collector(pod)
    second = Collector(pod)                      # every subscriber gets every event
    try:
        wait_for(lambda: True)
        cid = pod.run(command=["sleep", "1000"])
        pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
        pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
        kinds = [cri.CONTAINER_CREATED_EVENT, cri.CONTAINER_STARTED_EVENT, cri.CONTAINER_STOPPED_EVENT,
                 cri.CONTAINER_DELETED_EVENT]
        for col in (first, second):
            evs = wait_for(lambda c=col: len(c.of(cid)) >= 4 and c.of(cid), what="four events")  # type: ignore[misc]
            assert [e.container_event_type for e in evs] == kinds
            assert all(e.pod_sandbox_status.id == pod.id and e.created_at > 0 for e in evs)
            by_kind = {e.container_event_type: e for e in evs}
            started = [s for s in by_kind[cri.CONTAINER_STARTED_EVENT].containers_statuses if s.id == cid]
            assert started and started[0].state == cri.CONTAINER_RUNNING
            stopped = [s for s in by_kind[cri.CONTAINER_STOPPED_EVENT].containers_statuses if s.id == cid]
            assert stopped and stopped[0].state == cri.CONTAINER_EXITED
            assert not [s for s in by_kind[cri.CONTAINER_DELETED_EVENT].containers_statuses if s.id == cid]
    finally:
        first.close()
        second.close()


def test_exit_by_itself_sends_stopped(pod: Pod) -> None:
    col = Collector(pod)
    try:
        cid = pod.run(command=["sh", "-c", "exit 2"])
        evs = wait_for(lambda: len(col.of(cid)) >= 3 and col.of(cid), what="stopped event")
        stopped = evs[2]
        assert stopped.container_event_type == cri.CONTAINER_STOPPED_EVENT
        st = next(s for s in stopped.containers_statuses if s.id == cid)
        assert (st.exit_code, st.reason) == (2, "Error")
    finally:
        col.close()
