"""Container records ↔ CRI messages ↔ containerd metadata; signals; filters; the status state machine."""

from __future__ import annotations

import pytest

from criproxy.protos import cri
from criproxy.state.container import (
    ContainerMetadata,
    ContainerRecord,
    ContainerStatusData,
    ContainerStore,
    exit_reason,
)
from criproxy.translate import container as t


def record(**kw: object) -> ContainerRecord:
    cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="app", attempt=2),
                              image=cri.ImageSpec(image="busybox"), labels={"a": "1", "b": "2"},
                              annotations={"x": "y"}, log_path="app/2.log")
    base: dict[str, object] = dict(id="abc123", name="app_pod_ns_uid_2", sandbox_id="sb1", config=cfg,
                                   created_at=1000, image_name="docker.io/library/busybox:latest",
                                   image_id="sha256:img", image_ref="docker.io/library/busybox@sha256:dg",
                                   log_path="/logs/app/2.log", uid=1000, gid=1000, groups=(1000, 2000))
    base.update(kw)
    return ContainerRecord(ContainerMetadata(**base))  # type: ignore[arg-type]


def test_state_follows_timestamps_and_reasons() -> None:
    store = ContainerStore()
    rec = record()
    store.add(rec)
    assert rec.state == cri.CONTAINER_CREATED
    store.update_started(rec, 2000, 42)
    assert rec.state == cri.CONTAINER_RUNNING and rec.status.pid == 42
    gen = store.generation
    assert store.update_exited(rec, 1500, 1)                       # earlier than start: clamped
    assert rec.state == cri.CONTAINER_EXITED and rec.status.finished_at == 2000 and store.generation > gen
    assert not store.update_exited(rec, 3000, 0)                   # second report changes nothing
    assert exit_reason(rec.status) == "Error"
    store.update_oom(rec)
    assert exit_reason(rec.status) == "OOMKilled"
    assert exit_reason(ContainerStatusData(finished_at=1, reason="StartError")) == "StartError"
    assert exit_reason(ContainerStatusData(finished_at=1)) == "Completed"


def test_status_persisted_and_loaded(tmp_path: object) -> None:
    from pathlib import Path

    store = ContainerStore(Path(str(tmp_path)))
    rec = record()
    store.add(rec)
    store.update_started(rec, 5, 6)
    loaded = store.load_status(rec.id)
    assert loaded is not None and loaded.started_at == 5 and loaded.pid == 6
    store.remove(rec.id)
    assert store.load_status(rec.id) is None


def test_prefix_lookup() -> None:
    store = ContainerStore()
    store.add(record(id="abc1"))
    store.add(record(id="abc2"))
    assert store.get("abc1").id == "abc1"
    with pytest.raises(Exception, match="ambiguous"):
        store.find("abc")
    with pytest.raises(Exception, match="not found"):
        store.get("zzz")


def test_metadata_round_trip() -> None:
    rec = record()
    back = t.record_from_metadata(t.metadata_json(rec), 0)
    assert (back.id, back.name, back.sandbox_id, back.created_at, back.log_path) == \
        (rec.id, rec.name, rec.sandbox_id, 1000, rec.log_path)
    assert back.meta == rec.meta and (back.meta.uid, back.meta.gid, back.meta.groups) == (1000, 1000, (1000, 2000))


def test_cri_messages() -> None:
    rec = record()
    rec.status.started_at, rec.status.finished_at, rec.status.exit_code = 2000, 3000, 0
    item = t.to_cri_container(rec)
    assert item.state == cri.CONTAINER_EXITED and item.image_ref == "sha256:img" and item.pod_sandbox_id == "sb1"
    st = t.to_cri_status(rec)
    assert (st.reason, st.exit_code, st.image_ref, st.log_path) == ("Completed", 0, rec.meta.image_ref, rec.log_path)
    assert list(st.user.linux.supplemental_groups) == [1000, 2000] and st.stop_signal == cri.SIGNAL_SIGTERM


def test_filters() -> None:
    rec = record()
    assert t.matches(rec, cri.ContainerFilter())
    assert t.matches(rec, cri.ContainerFilter(id="abc", pod_sandbox_id="sb", label_selector={"a": "1"}))
    assert not t.matches(rec, cri.ContainerFilter(label_selector={"a": "2"}))
    assert not t.matches(rec, cri.ContainerFilter(state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING)))
    assert t.matches(rec, cri.ContainerFilter(state=cri.ContainerStateValue(state=cri.CONTAINER_CREATED)))
    assert not t.stats_matches(rec, cri.ContainerStatsFilter(pod_sandbox_id="other"))


def test_labels_and_name() -> None:
    cfg = record().config
    labels = t.containerd_labels(cfg, {"containerd.io/x": "1", "vendor": "v", "a": "img"}, "sb1")
    assert labels == {"vendor": "v", "a": "1", "b": "2", "io.cri-containerd.kind": "container",
                      "io.cri-containerd.sandbox-id": "sb1"}
    pod = cri.PodSandboxMetadata(name="p", namespace="n", uid="u")
    assert t.container_name(cfg.metadata, pod) == "app_p_n_u_2"


@pytest.mark.parametrize(("name", "num"), [("SIGTERM", 15), ("TERM", 15), ("9", 9), ("SIGUSR1", 10),
                                           ("SIGRTMIN+3", 37), ("SIGRTMAX-1", 63), ("bogus", 15)])
def test_signal_numbers(name: str, num: int) -> None:
    assert t.signal_number(name) == num


def test_cri_signal_names() -> None:
    assert t.cri_signal_name(cri.SIGNAL_SIGUSR1) == "SIGUSR1"
    assert t.cri_signal_name(cri.SIGNAL_SIGRTMINPLUS3) == "SIGRTMIN+3"
    assert t.cri_signal_name(cri.SIGNAL_RUNTIME_DEFAULT) == ""
    assert t.status_signal("SIGKILL") == cri.SIGNAL_SIGKILL


def test_unknown_state_and_its_exit() -> None:
    store = ContainerStore()
    rec = record()
    store.add(rec)
    store.update_started(rec, 10, 5)
    store.update_unknown(rec, True, "shim not answering")
    assert rec.state == cri.CONTAINER_UNKNOWN and rec.may_run
    st = t.to_cri_status(rec)
    assert (st.state, st.reason, st.message) == (cri.CONTAINER_UNKNOWN, "Unknown", "shim not answering")
    store.update_exited(rec, 20, 137)
    assert rec.state == cri.CONTAINER_EXITED and not rec.may_run and not rec.status.unknown


def test_status_resources_are_what_the_spec_applies() -> None:
    rec = record()
    rec.config.linux.resources.oom_score_adj = -998
    rec.config.linux.resources.memory_limit_in_bytes = 64 << 20
    rec.config.linux.resources.hugepage_limits.add(page_size="2MB", limit=0)
    assert t.to_cri_status(rec).resources.linux.oom_score_adj == -998        # spec unknown: the request
    rec.handles.applied = t.spec_resources(
        {"oomScoreAdj": 0},                                                   # clamped
        {"memory": {"limit": 64 << 20, "swap": 64 << 20}, "cpu": {"shares": 2, "cpus": "0"},
         "devices": [{"allow": False, "access": "rwm"}], "unified": {"memory.high": "1"}})
    got = t.to_cri_status(rec).resources.linux
    assert got == cri.LinuxContainerResources(oom_score_adj=0, memory_limit_in_bytes=64 << 20,
                                              memory_swap_limit_in_bytes=64 << 20, cpu_shares=2, cpuset_cpus="0",
                                              unified={"memory.high": "1"})     # no hugetlb here: none applied


def test_status_resources_from_a_malformed_spec_fall_back_to_the_request() -> None:
    rec = record()
    rec.config.linux.resources.cpu_shares = 7
    rec.handles.applied = t.spec_resources({"oomScoreAdj": "x"}, {"cpu": ["not", "a", "dict"]})
    assert rec.handles.applied is None
    assert t.to_cri_status(rec).resources.linux.cpu_shares == 7
