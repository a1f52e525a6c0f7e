"""RunPodSandbox/Stop/Remove/Status/List through the real CRI socket, checked in containerd and on the host."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from criproxy.protos import cri
from tests.harness.env import Environment
from tests.integration.sandbox.conftest import Pods, ipam_files, netns_addresses, ping, pod_config


def test_run_pod_with_cni_answers_from_host(pods: Pods, testenv: Environment, ctr: object) -> None:
    sid = pods.run(pod_config("web"))
    st = pods.status(sid).status
    assert st.state == cri.SANDBOX_READY
    assert testenv.criproxy_net.contains(st.network.ip), st.network.ip
    info = pods.info(sid)
    netns = str(info["netnsPath"])
    assert st.network.ip in netns_addresses(netns)
    assert ping(st.network.ip)
    containers = ctr("containers", "ls")  # type: ignore[operator]
    assert sid in containers
    tasks = ctr("tasks", "ls")  # type: ignore[operator]
    assert sid in tasks and "RUNNING" in tasks


def test_stop_remove_leave_nothing(pods: Pods, testenv: Environment, ctr: object) -> None:
    sid = pods.run(pod_config("gone"))
    info = pods.info(sid)
    netns, ip, sdir = str(info["netnsPath"]), pods.status(sid).status.network.ip, Path(str(info["sandboxDir"]))
    assert ip in ipam_files(testenv.ipam_dir)
    pods.stop(sid)
    assert pods.status(sid).status.state == cri.SANDBOX_NOTREADY
    pods.stop(sid)
    assert not os.path.exists(netns)
    assert ip not in ipam_files(testenv.ipam_dir)
    pods.remove(sid)
    pods.remove(sid)
    assert sid not in ctr("containers", "ls")  # type: ignore[operator]
    assert sid not in ctr("tasks", "ls")  # type: ignore[operator]
    assert sid not in ctr("snapshots", "ls")  # type: ignore[operator]
    assert not sdir.exists()


def _cgroup_dirs(parent: str, sid: str) -> list[Path]:
    """The sandbox's cgroup in every mounted hierarchy (v1 controllers, name=systemd, unified)."""
    return [h / parent.lstrip("/") / sid for h in Path("/sys/fs/cgroup").iterdir()
            if (h / parent.lstrip("/") / sid).is_dir()]


def test_cgroup_parent_and_no_cgroup_left(pods: Pods) -> None:
    cfg = pod_config("cg")
    cfg.linux.cgroup_parent = f"/criproxy-test/pod{cfg.metadata.uid}"
    sid = pods.run(cfg)
    assert any(p.parent.name == f"pod{cfg.metadata.uid}" for p in _cgroup_dirs(cfg.linux.cgroup_parent, sid))
    pods.stop(sid)
    pods.remove(sid)
    assert _cgroup_dirs(cfg.linux.cgroup_parent, sid) == []
    for h in Path("/sys/fs/cgroup").iterdir():   # the kubelet owns pod-level cgroups; here the test does
        with contextlib.suppress(OSError):
            (h / cfg.linux.cgroup_parent.lstrip("/")).rmdir()


def test_unknown_ids(pods: Pods) -> None:
    import grpc
    import pytest

    unknown = "f" * 64
    pods.stop(unknown)
    pods.remove(unknown)
    with pytest.raises(grpc.RpcError) as e:
        pods.status(unknown)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_filters_and_stream(pods: Pods) -> None:
    a = pods.run(pod_config("lista"))
    b_cfg = pod_config("listb")
    b_cfg.labels["tier"] = "back"
    b = pods.run(b_cfg)
    pods.stop(a)
    rt = pods.client.runtime

    def ids(flt: cri.PodSandboxFilter | None = None) -> set[str]:
        req = cri.ListPodSandboxRequest(filter=flt) if flt is not None else cri.ListPodSandboxRequest()
        return {i.id for i in rt.ListPodSandbox(req).items}

    assert {a, b} <= ids()
    assert ids(cri.PodSandboxFilter(id=a)) == {a}
    assert ids(cri.PodSandboxFilter(id=b[:10])) == {b}
    ready = ids(cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY)))
    assert b in ready and a not in ready
    assert ids(cri.PodSandboxFilter(label_selector={"tier": "back"})) == {b}
    items = {i.id: i for i in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items}
    assert items[a].state == cri.SANDBOX_NOTREADY and items[b].metadata.name == "listb"
    streamed = [s.id for r in rt.StreamPodSandboxes(cri.StreamPodSandboxesRequest()) for s in r.pod_sandboxes]
    assert {a, b} <= set(streamed)


def test_invalid_config_changes_nothing(pods: Pods, ctr: object) -> None:
    import grpc
    import pytest

    before = ctr("containers", "ls", "-q")  # type: ignore[operator]
    bad = pod_config("bad")
    bad.metadata.uid = ""
    with pytest.raises(grpc.RpcError) as e:
        pods.run(bad)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pod_config("badhandler"), handler="no-such-handler")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no-such-handler" in (e.value.details() or "")
    userns = pod_config("userns")
    userns.linux.security_context.namespace_options.userns_options.mode = cri.POD
    with pytest.raises(grpc.RpcError) as e:
        pods.run(userns)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]


def test_runc_handler_and_status_details(pods: Pods) -> None:
    sid = pods.run(pod_config("handler"), handler="runc")
    st = pods.status(sid).status
    assert st.runtime_handler == "runc" and st.metadata.name == "handler"
    assert st.labels["io.kubernetes.pod.name"] == "handler" and st.annotations["kubernetes.io/config.source"] == "api"
    info = pods.info(sid)
    assert info["runtimeType"] == "io.containerd.runc.v2" and info["cniResult"]


def test_stop_and_remove_take_the_pods_containers(pods: Pods, testenv: Environment, ctr: object,
                                                  tmp_path: Path) -> None:
    c = pods.client
    c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=testenv.busybox_image)), timeout=300)
    cfg = pod_config("withctr")
    cfg.log_directory = str(tmp_path)
    sid = pods.run(cfg)
    ccfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="sleeper"),
                               image=cri.ImageSpec(image=testenv.busybox_image),
                               command=["sleep", "3600"], log_path="sleeper/0.log")
    cid = c.runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                               sandbox_config=cfg)).container_id
    c.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    pods.stop(sid)
    st = c.runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
    assert st.state == cri.CONTAINER_EXITED
    pods.remove(sid)
    assert cid not in ctr("containers", "ls", "-q")  # type: ignore[operator]
    assert not c.runtime.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(pod_sandbox_id=sid))).containers


def test_runtime_default_seccomp_pod_runs(pods: Pods) -> None:
    cfg = pod_config("seccomp")
    cfg.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    sid = pods.run(cfg)
    pid = int(pods.info(sid)["pid"])  # type: ignore[call-overload]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Seccomp:\t2" in status


def test_many_pods_at_once(pods: Pods, testenv: Environment) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: pods.run(pod_config(f"par{i}")), range(8)))
        ips = [pods.status(sid).status.network.ip for sid in ids]
        assert len(set(ids)) == 8 and len(set(ips)) == 8 and all(ips)
        assert all(pods.status(sid).status.state == cri.SANDBOX_READY for sid in ids)
        list(pool.map(pods.stop, ids))
        list(pool.map(pods.remove, ids))
    assert not set(ips) & set(ipam_files(testenv.ipam_dir))
