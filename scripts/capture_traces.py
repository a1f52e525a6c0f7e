#!/usr/bin/env python3
"""Regenerate docs/traces.md: the containerd calls each CRI call makes, captured from a real run.

Brings up the test environment (run as root after scripts/install-test-deps.sh), drives a pod's
whole life through criproxy's CRI socket as a kubelet would, then reads the recorded translation
traces from criproxy's debug socket. The page is therefore true to the code by construction:
rerun this after changing a handler.

    .venv/bin/python scripts/capture_traces.py
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from criproxy.protos import cri  # noqa: E402
from tests.harness.env import Environment  # noqa: E402

HEADER = """# What each CRI call does in containerd

Captured by `scripts/capture_traces.py` from a real run: criproxy on a private containerd 1.6, a pod
with one busybox container driven through the CRI socket in the order a kubelet uses. Each line is
one CRI call, then the containerd calls it made (service.Method[status code, milliseconds]) in the
order they finished; calls made concurrently show up interleaved. `notes` are the handler's own
progress remarks. Calls answered from criproxy's records and caches (the status and list reads, the
image reads of an image that is there, ImageFsInfo after its first measurement) make none and are
listed first; the traced ImageStatus is the kubelet's question before the pull (an absent image is
confirmed with containerd).
The same traces are served live on `<state>/debug.sock` at `/traces` (docs/architecture.md).

"""


def http_get(path: Path, target: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: criproxy\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode().partition("\r\n\r\n")[2]


def drive(env: Environment, rt: object, im: object, logs: Path) -> None:
    """A static pod's life in the order a kubelet makes the calls, minus the polling."""
    uid = str(uuid.uuid4())
    pod = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="web", namespace="default", uid=uid),
                               hostname="web", log_directory=str(logs / f"default_web_{uid}"))
    sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod), timeout=120).pod_sandbox_id  # type: ignore[attr-defined]
    rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid))  # type: ignore[attr-defined]
    spec = cri.ImageSpec(image=env.busybox_image)
    im.ImageStatus(cri.ImageStatusRequest(image=spec))  # type: ignore[attr-defined]
    im.PullImage(cri.PullImageRequest(image=spec), timeout=120)  # type: ignore[attr-defined]
    ctr = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="app"), image=spec,
                              command=["sh", "-c", "echo hello; sleep 3600"], log_path="app/0.log")
    cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=ctr,  # type: ignore[attr-defined]
                                                        sandbox_config=pod)).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))  # type: ignore[attr-defined]
    rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid))  # type: ignore[attr-defined]
    im.ImageStatus(cri.ImageStatusRequest(image=spec))  # type: ignore[attr-defined]
    im.ListImages(cri.ListImagesRequest())  # type: ignore[attr-defined]
    im.ImageFsInfo(cri.ImageFsInfoRequest())  # type: ignore[attr-defined]
    rt.ListContainers(cri.ListContainersRequest())  # type: ignore[attr-defined]
    rt.ListPodSandbox(cri.ListPodSandboxRequest())  # type: ignore[attr-defined]
    rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid))  # type: ignore[attr-defined]
    rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10))  # type: ignore[attr-defined]
    rt.ContainerStats(cri.ContainerStatsRequest(container_id=cid))  # type: ignore[attr-defined]
    rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=2))  # type: ignore[attr-defined]
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))  # type: ignore[attr-defined]
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))  # type: ignore[attr-defined]
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))  # type: ignore[attr-defined]
    im.ImageFsInfo(cri.ImageFsInfoRequest())  # type: ignore[attr-defined]
    im.RemoveImage(cri.RemoveImageRequest(image=spec))  # type: ignore[attr-defined]


def calls_without_containerd(metrics: str, traces: list[dict[str, object]]) -> list[str]:
    """The CRI methods with calls that left no trace (the metrics count every call, the trace ring
    keeps only those that reached containerd or failed): those calls made no containerd call."""
    called: dict[str, int] = {}
    for line in metrics.splitlines():
        if line.startswith("criproxy_cri_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            called[method] = called.get(method, 0) + int(float(line.rsplit(" ", 1)[1]))
    traced: dict[str, int] = {}
    for t in traces:
        traced[str(t["rpc"])] = traced.get(str(t["rpc"]), 0) + 1
    out = []
    for method, n in sorted(called.items()):
        untraced = n - traced.get(method, 0)
        if untraced > 0:
            out.append(method if untraced == n else f"{method} ({untraced} of {n} calls)")
    return out


def render(traces: list[dict[str, object]], without: list[str]) -> str:
    out = [HEADER]
    if without:
        out.append("Answered without any containerd call (from criproxy's records and caches): "
                   + ", ".join(without) + ".\n")
    for t in traces:
        out.append(f"## {t['rpc']} ({t['code']}, {t['ms']} ms)\n")
        steps = t["steps"]
        assert isinstance(steps, list)
        out.append("```")
        out += [f"{s[0]}.{s[1]}[{s[2]} {s[3]}ms]" for s in steps] or ["(no containerd calls)"]
        out.append("```")
        notes = t.get("notes") or []
        if notes:
            out.append("notes: " + "; ".join(str(n) for n in notes))  # type: ignore[union-attr]
        out.append("")
    return "\n".join(out)


def main() -> None:
    env = Environment.create()
    try:
        proc = env.new_criproxy("traces", extra_args=["--log-level", "info"])
        with proc.client() as client:
            drive(env, client.runtime, client.image, env.scratch_dir("logs"))
        traces = json.loads(http_get(proc.state / "debug.sock", "/traces"))
        metrics = http_get(proc.state / "debug.sock", "/metrics")
    finally:
        env.close()
    (ROOT / "docs" / "traces.md").write_text(render(traces, calls_without_containerd(metrics, traces)))
    print(f"wrote docs/traces.md with {len(traces)} traces")


if __name__ == "__main__":
    main()
