"""``criproxy compare`` against criproxy and the built-in CRI in one invocation, through a proxy.

Both endpoints are reached through a small gRPC proxy written here, so each side pays the same
extra hop. Against the built-in CRI, the proxy in front of criproxy (side A) adds an environment
variable to every CreateContainer config: the report must show it as a spec difference. Against
criproxy itself, the proxy on side A delays ListContainers by half a second: the report must show a
ratio well above 1 for ListContainers only. The HTML report is
then rendered in headless Chromium: a non-empty screenshot, no console message, the plots present.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment

REPO = Path(__file__).resolve().parents[2]
DELAY = 0.5
DELAYED = "ListContainers"
INJECTED = "COMPARE_INJECTED"
REPS = 5


class _Forwarder(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards every unary CRI call as bytes to ``upstream``; sleeps first for ``delay`` methods and
    rewrites CreateContainer with ``inject`` env."""

    def __init__(self, upstream: str, delay: dict[str, float], inject: dict[str, str]) -> None:
        self.channel = grpc.insecure_channel(f"unix://{upstream}")
        self.delay, self.inject = delay, inject

    def service(self, details: Any) -> Any:
        method: str = details.method
        call = self.channel.unary_unary(method)
        name = method.rsplit("/", 1)[-1]

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if name in self.delay:
                time.sleep(self.delay[name])
            if name == "CreateContainer" and self.inject:
                req = cri.CreateContainerRequest.FromString(request)
                for k, v in self.inject.items():
                    req.config.envs.append(cri.KeyValue(key=k, value=v.encode()))  # value is bytes here
                request = req.SerializeToString()
            try:
                resp: bytes = call(request, timeout=context.time_remaining())
                return resp
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())
                raise

        return grpc.unary_unary_rpc_method_handler(handle)


def _proxy(listen: Path, upstream: Path, delay: dict[str, float], inject: dict[str, str]) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[_Forwarder(str(upstream), delay,
                                                                                           inject)])
    server.add_insecure_port(f"unix://{listen}")
    server.start()
    return server


def _compare(testenv: Environment, a: Path, b: Path, delay: dict[str, float], inject: dict[str, str],
             extra: list[str]) -> tuple[dict[str, Any], Path]:
    """``criproxy compare`` as a subprocess with A and B reached through ``_proxy``; its JSON report."""
    work = testenv.scratch_dir("compare")
    pa = _proxy(work / "a.sock", a, delay, inject)
    pb = _proxy(work / "b.sock", b, {}, {})
    out = work / "report"
    argv = [sys.executable, "-m", "criproxy", "compare", "--a", str(work / "a.sock"), "--b", str(work / "b.sock"),
            "--image", testenv.busybox_image, "--out", str(out), "--log-dir", str(work / "logs"),
            "--format", "json", *extra]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=REPO)
    finally:
        pa.stop(None)
        pb.stop(None)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((out / "report.json").read_text())
    assert json.loads(proc.stdout) == doc
    return doc, out


@pytest.fixture(scope="module")
def compare_run(testenv: Environment, criproxy_proc: CriproxyProcess) -> tuple[dict[str, Any], Path]:
    """criproxy (A, its CreateContainer given an extra env) against the built-in CRI (B)."""
    testenv.ensure_running()
    criproxy_proc.ensure_running()
    ctrd = testenv.ctrd
    return _compare(testenv, criproxy_proc.socket, testenv.containerd_address, {}, {INJECTED: "1"}, [
        "--scenario", "container-lifecycle", "--scenario", "list-status", "--reps", str(REPS),
        "--pods", "1", "--containers", "1", "--containerd", str(testenv.containerd_address),
        "--a-namespace", criproxy_proc.namespace, "--b-namespace", "k8s.io",
        "--a-dir", str(criproxy_proc.root), "--a-dir", str(criproxy_proc.state),
        "--b-dir", str(ctrd.root / "io.containerd.grpc.v1.cri"),
        "--b-dir", str(ctrd.state / "io.containerd.grpc.v1.cri")])


def test_compare_reports_both_sides(compare_run: tuple[dict[str, Any], Path]) -> None:
    doc, _ = compare_run
    assert doc["failures"] == {}
    assert "criproxy" in doc["meta"]["a"] and "containerd" in doc["meta"]["b"]
    lifecycle = doc["scenarios"]["container-lifecycle"]
    assert set(doc["scenarios"]["list-status"]) == {"ListPodSandbox", "ListContainers", "PodSandboxStatus",
                                                     "ContainerStatus"}
    assert set(lifecycle) == {"CreateContainer", "StartContainer", "ContainerStatus", "StopContainer",
                              "RemoveContainer"}
    for rpc, s in {**lifecycle, **doc["scenarios"]["list-status"]}.items():
        assert s["n"] == {"a": REPS, "b": REPS}, rpc
        assert s["codes"] == {"a": {"OK": REPS}, "b": {"OK": REPS}}, rpc
        assert not s["codes_differ"]
        for q in (50, 95, 99):
            assert s[f"p{q}"]["a"] > 0 and s[f"p{q}"]["b"] > 0
        assert len(s["samples_ms"]["a"]) == REPS


def test_delayed_rpc_alone_shows_a_high_ratio(testenv: Environment, criproxy: CriproxyProcess) -> None:
    """The same criproxy on both sides, A through a proxy that delays ListContainers: only that RPC's
    ratio rises (both sides otherwise do identical work, so the others stay near 1)."""
    doc, _ = _compare(testenv, criproxy.socket, criproxy.socket, {DELAYED: DELAY}, {},
                      ["--scenario", "list-status", "--reps", str(2 * REPS), "--pods", "1", "--containers", "1"])
    reads = doc["scenarios"]["list-status"]
    assert set(reads) == {"ListPodSandbox", "ListContainers", "PodSandboxStatus", "ContainerStatus"}
    assert reads[DELAYED]["p50"]["a"] >= DELAY * 1000
    assert reads[DELAYED]["ratio_p50"] > 5
    others = {rpc: s["ratio_p50"] for rpc, s in reads.items() if rpc != DELAYED}
    # Relative, not absolute: under load the same runtime on both sides can differ several-fold on 10
    # samples, but never by the two orders of magnitude a 0.5 s delay adds to a ~ms call.
    assert all(r < reads[DELAYED]["ratio_p50"] / 20 for r in others.values()), (reads[DELAYED]["ratio_p50"], others)


def test_injected_spec_difference_is_reported(compare_run: tuple[dict[str, Any], Path]) -> None:
    doc, _ = compare_run
    found = [d for d in doc["spec_differences"] if INJECTED in d["path"] or INJECTED in json.dumps(d["a"])]
    assert found, [d["path"] for d in doc["spec_differences"]]
    assert all(d["scenario"] == "container-lifecycle" for d in found)
    assert INJECTED not in json.dumps(found[0]["b"])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed (scripts/install-test-deps.sh installs it)")


def _headless(page: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Chromium, headless and offline, on a fresh profile; console messages go to stderr."""
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1280,1600",
            *extra, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(work)})


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_html_report_renders_in_headless_chromium(compare_run: tuple[dict[str, Any], Path],
                                                   testenv: Environment) -> None:
    doc, out = compare_run
    work = testenv.scratch_dir("chromium")
    page = out / "report.html"
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text

    # the console check can fail: a page that throws is caught
    bad = work / "bad.html"
    bad.write_text("<html><body><script>throw new Error('compare-test-boom')</script></body></html>")
    assert any("compare-test-boom" in line for line in _console(_headless(bad, work, "--dump-dom").stderr))

    shot = work / "report.png"
    res = _headless(page, work, f"--screenshot={shot}")
    assert _console(res.stderr) == [], res.stderr[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 1600) and len(data) > 20_000

    dom = _headless(page, work, "--dump-dom")
    assert _console(dom.stderr) == []
    rpcs = sum(len(s) for s in doc["scenarios"].values())
    assert 'data-ready="1"' in dom.stdout            # the inline script ran to its end
    assert dom.stdout.count('<svg class="dist"') == rpcs
    assert dom.stdout.count('<svg class="ratios"') == 1
    assert dom.stdout.count("<circle") >= 2 * REPS * rpcs
    assert INJECTED in dom.stdout                     # the spec difference table


