"""``criproxy ui`` in headless Chromium, driven over the DevTools protocol, and ``criproxy trace``.

The page is loaded first; then a pod's life is driven through the CRI socket, and the test watches
the RunPodSandbox row appear without a reload, clicks it and reads the containerd calls it expands
into. The console must stay clean and the screenshot must show something.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from criproxy.protos import cri as pb
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1400,1000")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed (scripts/install-test-deps.sh installs it)")


def start_ui(sock: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "criproxy", "ui", "--debug-socket", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("criproxy ui: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
    return proc, line.split(": ", 1)[1].strip()


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def pod_life(env: Environment, client: CriClient, logs: Path) -> str:
    """RunPodSandbox, a container started, stopped and removed, the pod stopped and removed."""
    rt, im = client.runtime, client.image
    uid = str(uuid.uuid4())
    pod = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="ui-web", namespace="default", uid=uid),
                              hostname="ui-web", log_directory=str(logs / uid))
    sid = str(rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pod), timeout=120).pod_sandbox_id)
    spec = pb.ImageSpec(image=env.busybox_image)
    im.PullImage(pb.PullImageRequest(image=spec), timeout=120)
    ctr = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app"), image=spec,
                             command=["sh", "-c", "sleep 3600"], log_path="app.log")
    cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ctr, sandbox_config=pod)).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1))
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    return sid


class Cdp:
    """The few DevTools-protocol calls the test needs, over one page target's WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.ids = ws, itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] in ("error", "assert"):
                self.errors.append(json.dumps(data["params"]["args"])[:500])
            elif data.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                self.errors.append(data["params"]["entry"].get("text", "")[:500])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[n] = fut
        await self.ws.send_json({"id": n, "method": method, "params": params})
        answer = await asyncio.wait_for(fut, 30)
        assert "error" not in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def eval(self, expr: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    async def until(self, expr: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expr)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expr}")


def start_chromium(profile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(profile)})


async def browse(url: str, profile: Path, drive: Any) -> dict[str, Any]:
    """Load the page, run ``drive`` (the pod's life) while it is open, and read what it shows."""
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            break
        await asyncio.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with http.ws_connect(ws_url, max_msg_size=64 * 1024 * 1024) as ws:
            cdp = Cdp(ws)
            for domain in ("Runtime", "Log", "Page"):
                await cdp.call(f"{domain}.enable")
            await cdp.call("Page.navigate", url=url)
            await cdp.until("document.readyState === 'complete' && document.getElementById('conn').textContent"
                            " === 'live'")
            before = await cdp.eval("document.querySelectorAll('tr.call').length")
            sid = await asyncio.to_thread(drive)
            row = f"document.querySelector('tr.call[data-rpc=\"RunPodSandbox\"][data-pod=\"{sid}\"]')"
            await cdp.until(f"!!{row}")
            await cdp.eval(f"{row}.click()")
            calls = await cdp.until(f"(() => {{ const id = {row}.dataset.id; const r = document.querySelector("
                                    f"'tr.steps-row[data-for=\"' + id + '\"]'); return r && "
                                    f"Array.from(r.querySelectorAll('li')).map(l => l.dataset.call); }})()")
            entry_id = await cdp.eval(f"Number({row}.dataset.id)")
            await cdp.until("document.querySelectorAll('#images tr[data-image]').length > 0")   # the cache panel
            shot = await cdp.call("Page.captureScreenshot", format="png")
            cdp.reader.cancel()
            return {"before": before, "calls": calls, "id": entry_id, "errors": cdp.errors,
                    "png": base64.b64decode(shot["data"]), "sid": sid}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_ui_shows_run_pod_sandbox_live_and_expands(criproxy: CriproxyProcess, cri: CriClient,
                                                   testenv: Environment) -> None:
    sock = criproxy.state / "debug.sock"
    ui, url = start_ui(sock)
    work = testenv.scratch_dir("ui")
    try:
        async def forbidden() -> int:
            async with aiohttp.ClientSession() as http, http.get(url.split("?")[0] + "api/traces") as r:
                return r.status
        assert asyncio.run(forbidden()) == 403          # no token, no page

        chrome = start_chromium(work / "profile")
        try:
            seen = asyncio.run(browse(url, work / "profile", lambda: pod_life(testenv, cri, work)))
        finally:
            chrome.kill()
            chrome.wait(10)
    finally:
        stop(ui)
    assert ui.returncode == 0          # SIGTERM ends it cleanly
    assert seen["errors"] == []
    width, height = _png_size(seen["png"])
    assert width > 0 and height > 0 and len(seen["png"]) > 10_000
    if os.environ.get("CRIPROXY_UI_SCREENSHOT"):        # where to keep the picture for a person to look at
        Path(os.environ["CRIPROXY_UI_SCREENSHOT"]).write_bytes(seen["png"])

    # what the page shows is the recorded trace, in the same order
    traces = json.loads(_get(sock, "/traces"))
    entry = next(t for t in traces if t["id"] == seen["id"])
    assert entry["rpc"] == "RunPodSandbox" and entry["pod"] == seen["sid"]
    assert seen["calls"] == [f"{s[0]}.{s[1]}" for s in entry["steps"]]
    # and that order is a pod's: the pause container's record, then its task created and started
    calls = seen["calls"]
    assert calls.index("Containers.Create") < calls.index("Tasks.Create") < calls.index("Tasks.Start")
    create = next(s for s in entry["steps"] if s[:2] == ["Tasks", "Create"])
    assert create[4]["container_id"] == seen["sid"]   # the key argument shown beside the call


def _get(sock: Path, target: str) -> str:
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: criproxy\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode().partition("\r\n\r\n")[2]


def test_trace_command_prints_and_follows(criproxy: CriproxyProcess, cri: CriClient) -> None:
    sock = criproxy.state / "debug.sock"
    follow = subprocess.Popen([sys.executable, "-m", "criproxy", "trace", "--follow", "--json", "--rpc",
                               "PodSandboxStatus", "--debug-socket", str(sock)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        marker = f"trace-follow-{uuid.uuid4().hex[:8]}"
        with pytest.raises(grpc.RpcError):     # NOT_FOUND: kept in the ring because it failed
            cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=marker))
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        found = None
        while time.monotonic() < deadline and found is None:
            entry = json.loads(follow.stdout.readline())
            assert entry["rpc"] == "PodSandboxStatus"          # --rpc filters
            if entry["pod"] == marker:
                found = entry
        assert found is not None and found["code"] == "NOT_FOUND" and marker in found["error"]
    finally:
        stop(follow)
    text = subprocess.run([sys.executable, "-m", "criproxy", "trace", "--debug-socket", str(sock)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "PodSandboxStatus NOT_FOUND" in text.stdout and f"pod={marker}" in text.stdout
    missing = subprocess.run([sys.executable, "-m", "criproxy", "trace", "--debug-socket", str(sock) + ".nope"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "cannot read the debug socket" in missing.stderr
