"""Metrics and the translation trace on criproxy's private debug socket."""

from __future__ import annotations

import json
import socket
import stat

import grpc
import pytest

from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess


def http_get(path: str, target: str) -> tuple[str, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: criproxy\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.split("\r\n", 1)[0], body


def test_metrics_and_traces(criproxy: CriproxyProcess, cri: CriClient) -> None:
    sock = criproxy.state / "debug.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # root only
    cri.runtime.Status(cri.pb.StatusRequest())
    with pytest.raises(grpc.RpcError):
        cri.runtime.PodSandboxStatus(cri.pb.PodSandboxStatusRequest(pod_sandbox_id="does-not-exist"))
    status, body = http_get(str(sock), "/metrics")
    assert status.endswith("200 OK")
    assert 'criproxy_cri_requests_total{method="Status",code="OK"}' in body
    assert 'criproxy_cri_requests_total{method="PodSandboxStatus",code="NOT_FOUND"}' in body
    assert 'criproxy_containerd_calls_total{service="Version",method="Version",code="OK"}' in body
    assert 'criproxy_cri_request_seconds_count{method="Status"}' in body
    for gauge in ("received", "published", "dropped", "reconnects", "subscribers"):   # the event relay
        assert f"criproxy_events_{gauge} " in body
    status, body = http_get(str(sock), "/traces")
    traces = json.loads(body)
    status_traces = [t for t in traces if t["rpc"] == "Status"]
    assert status_traces and status_traces[-1]["steps"][0][:3] == ["Version", "Version", "OK"]
    status, _ = http_get(str(sock), "/nope")
    assert status.endswith("404 Not Found")
