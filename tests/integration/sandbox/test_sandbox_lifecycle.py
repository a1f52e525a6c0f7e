"""RunPodSandbox/Stop/Remove/Status/List through the real CRI socket, checked in containerd and on the host."""

from __future__ import annotations

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
