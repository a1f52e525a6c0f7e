"""Create/start/stop/remove/status/list through the CRI socket, checked in containerd, on the host
and in the CRI log file."""

from __future__ import annotations

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, read_log, wait_for


def test_run_logs_and_completed(pod: Pod, ctr: object) -> None:
    cid = pod.run(command=["sh", "-c", "echo hello; echo oops >&2; printf partial"])
    st = pod.wait_exit(cid)
    assert (st.exit_code, st.reason) == (0, "Completed")
    assert st.started_at >= st.created_at > 0 and st.finished_at >= st.started_at
    assert st.log_path == str(pod.log("c"))
    recs = wait_for(lambda: len(r := read_log(pod.log())) >= 3 and r, what="log records")
    assert ("stdout", "F", "hello") in recs and ("stderr", "F", "oops") in recs and ("stdout", "P", "partial") in recs
    assert cid in ctr("containers", "ls")  # type: ignore[operator]
    # The exited task is deleted once its output is drained, which may trail the status (a slow host)
    wait_for(lambda: cid not in ctr("tasks", "ls"), what="the exited task deleted")  # type: ignore[operator]


def test_long_line_split_at_16k(pod: Pod) -> None:
    cid = pod.run(command=["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo"])
    pod.wait_exit(cid)
    recs = wait_for(lambda: read_log(pod.log()), what="log")
    assert [(t, len(x)) for _s, t, x in recs] == [("P", 16384), ("P", 16384), ("F", 40000 - 32768)]


def test_exit_1_is_error(pod: Pod) -> None:
    st = pod.wait_exit(pod.run(command=["sh", "-c", "exit 3"]))
    assert (st.state, st.exit_code, st.reason) == (cri.CONTAINER_EXITED, 3, "Error")


def test_missing_binary_is_start_error(pod: Pod, ctr: object) -> None:
    cid = pod.create(command=["/no/such/binary"])
    with pytest.raises(grpc.RpcError):
        pod.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    st = pod.status(cid)
    assert (st.state, st.reason) == (cri.CONTAINER_EXITED, "StartError")
    assert "no/such/binary" in st.message and st.exit_code == 128
    assert cid not in ctr("tasks", "ls")  # type: ignore[operator]


def test_stop_running_and_remove_leave_nothing(pod: Pod, ctr: object, testenv: Environment) -> None:
    cid = pod.run(command=["sleep", "1000"])
    st = pod.status(cid)
    assert st.state == cri.CONTAINER_RUNNING
    assert cid in ctr("tasks", "ls")  # type: ignore[operator]
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=2))
    st = pod.status(cid)
    assert st.state == cri.CONTAINER_EXITED and st.exit_code == 137 and st.reason == "Error"
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=2))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    for what in ("containers", "tasks", "snapshots"):
        assert cid not in ctr(what, "ls")  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as e:
        pod.status(cid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_stop_signal_honoured_before_timeout(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    cid = pod.run(cfg)
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=20), timeout=10)
    st = pod.status(cid)
    assert (st.exit_code, st.reason) == (0, "Completed")


def test_remove_running_kills_it(pod: Pod, ctr: object) -> None:
    cid = pod.run(command=["sleep", "1000"])
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    assert cid not in ctr("tasks", "ls")  # type: ignore[operator]
    assert cid not in ctr("containers", "ls")  # type: ignore[operator]


def test_list_filters_and_states(pod: Pod) -> None:
    a = pod.run(container_config(pod.image, name="a", command=["sleep", "1000"]))
    b = pod.create(container_config(pod.image, name="b", command=["true"]))
    rt = pod.rt

    def ids(**flt: object) -> set[str]:
        req = cri.ListContainersRequest(filter=cri.ContainerFilter(**flt))  # type: ignore[arg-type]
        return {c.id for c in rt.ListContainers(req).containers}

    assert {a, b} <= ids()
    assert ids(pod_sandbox_id=pod.id) == {a, b}
    assert ids(id=a[:12]) == {a}
    assert ids(state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING), pod_sandbox_id=pod.id) == {a}
    assert ids(state=cri.ContainerStateValue(state=cri.CONTAINER_CREATED), pod_sandbox_id=pod.id) == {b}
    assert ids(label_selector={"io.kubernetes.container.name": "b"}) == {b}
    item = next(c for c in rt.ListContainers(cri.ListContainersRequest()).containers if c.id == a)
    assert item.pod_sandbox_id == pod.id and item.metadata.name == "a" and item.image_ref.startswith("sha256:")
    streamed = {c.id for r in rt.StreamContainers(cri.StreamContainersRequest()) for c in r.containers}
    assert {a, b} <= streamed


def test_status_fields(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["sleep", "1000"], annotations={"x": "y"})
    cfg.linux.resources.memory_limit_in_bytes = 64 << 20
    cid = pod.run(cfg)
    st = pod.status(cid, verbose=True)
    assert st.image.image == pod.image and st.image_id.startswith("sha256:") and "@sha256:" in st.image_ref
    assert st.annotations["x"] == "y" and st.labels["io.kubernetes.container.name"] == "c"
    assert st.resources.linux.memory_limit_in_bytes == 64 << 20
    assert st.user.linux.uid == 0
    info = pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True)).info
    assert "runtimeSpec" in info["info"]


def test_unknown_ids(pod: Pod) -> None:
    rt = pod.rt
    rt.StopContainer(cri.StopContainerRequest(container_id="0" * 64))
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id="0" * 64))
    for call in (lambda: rt.ContainerStatus(cri.ContainerStatusRequest(container_id="0" * 64)),
                 lambda: rt.StartContainer(cri.StartContainerRequest(container_id="0" * 64))):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_create_leaves_nothing(pod: Pod, ctr: object) -> None:
    before = (ctr("containers", "ls"), ctr("snapshots", "ls"))  # type: ignore[operator]
    rt = pod.rt
    bad = [
        (cri.CreateContainerRequest(pod_sandbox_id=pod.id, config=container_config("127.0.0.1:1/none:1")),
         grpc.StatusCode.NOT_FOUND),
        (cri.CreateContainerRequest(pod_sandbox_id="f" * 64, config=container_config(pod.image)),
         grpc.StatusCode.NOT_FOUND),
        (cri.CreateContainerRequest(pod_sandbox_id=pod.id, config=container_config(
            pod.image, command=["true"], linux=cri.LinuxContainerConfig(
                security_context=cri.LinuxContainerSecurityContext(run_as_username="nobody-here")))),
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for req, code in bad:
        with pytest.raises(grpc.RpcError) as e:
            rt.CreateContainer(req)
        assert e.value.code() == code, e.value.details()
    assert (ctr("containers", "ls"), ctr("snapshots", "ls")) == before  # type: ignore[operator]


def test_duplicate_name(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["true"])
    first = pod.create(cfg)
    assert pod.create(cfg) == first                 # a kubelet retry gets the same container
    other = container_config(pod.image, command=["false"])
    with pytest.raises(grpc.RpcError) as e:
        pod.create(other)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_create_in_stopped_pod_fails(pod: Pod) -> None:
    pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
    with pytest.raises(grpc.RpcError) as e:
        pod.create(command=["true"])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_pod_stop_and_remove_reach_containers(pod: Pod, ctr: object) -> None:
    cid = pod.run(command=["sleep", "1000"])
    pod.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod.id))
    assert pod.status(cid).state == cri.CONTAINER_EXITED
    pod.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
    assert cid not in ctr("containers", "ls")  # type: ignore[operator]


def test_create_by_image_id_as_kubelet_does(pod: Pod) -> None:
    image_id = pod.client.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=pod.image))).image.id
    cid = pod.run(container_config(image_id, command=["true"]))
    st = pod.wait_exit(cid)
    assert st.reason == "Completed" and st.image_id == image_id
    assert st.image.image == pod.image and "@sha256:" in st.image_ref


def test_concurrent_retry_gets_the_same_container(pod: Pod, ctr: object) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cfg = container_config(pod.image, name="twice", command=["true"])
    req = cri.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg, sandbox_config=pod.cfg)
    with ThreadPoolExecutor(4) as ex:
        ids = list(ex.map(lambda _: pod.rt.CreateContainer(req).container_id, range(4)))
    assert len(set(ids)) == 1
    pod.containers.append(ids[0])
    assert ctr("containers", "ls").count(ids[0]) == 1  # type: ignore[attr-defined]
