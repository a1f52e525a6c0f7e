"""The README's run command (scripts/run.sh) brings up a criproxy that answers Version."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import grpc

from tests.harness.client import CriClient
from tests.harness.env import Environment

REPO = Path(__file__).resolve().parents[2]


def test_run_script_serves_version(testenv: Environment) -> None:
    base = testenv.base / "runsh"
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "cri.sock"
    log = base / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "run.sh"), "--listen", str(sock),
                                 "--root", str(base / "root"), "--state", str(base / "st"),
                                 "--managed-containerd", "always",
                                 "--containerd-binary", str(testenv.ctrd.binary)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                # this checkout's own venv: checkouts tested at once must not
                                # reinstall one shared venv under each other's running criproxy
                                env={**os.environ, "CRIPROXY_VENV": str(REPO / ".testenv" / "run-venv")})
    try:
        deadline = time.monotonic() + 300  # first run installs a venv
        answered = None
        while time.monotonic() < deadline and proc.poll() is None:
            if sock.exists():
                with CriClient(sock) as client:
                    try:
                        answered = client.version(timeout=2)
                        break
                    except grpc.RpcError:
                        pass
            time.sleep(0.5)
        assert answered is not None, log.read_text()[-3000:]
        assert answered.runtime_name == "criproxy"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # exec'd into criproxy: this is criproxy's PID
            proc.wait(60)
    assert proc.returncode == 0, log.read_text()[-3000:]
