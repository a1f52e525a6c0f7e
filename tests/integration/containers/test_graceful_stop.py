"""SIGTERM lets in-flight CRI calls finish (within the grace period) before criproxy exits."""

from __future__ import annotations

import threading
import time

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.integration.containers.conftest import Pod


def test_inflight_exec_finishes_across_sigterm(criproxy: CriproxyProcess, pod: Pod) -> None:
    cid = pod.run(command=["sleep", "3600"])
    result: dict[str, object] = {}

    def call() -> None:
        try:
            req = cri.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "sleep 2; echo done"], timeout=30)
            result["resp"] = pod.rt.ExecSync(req, timeout=60)
        except Exception as e:  # reported below
            result["err"] = e

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.7)  # the exec is running inside the container now
    try:
        code = criproxy.stop(grace=20)
        t.join(30)
        assert "err" not in result, result.get("err")
        resp = result["resp"]
        assert isinstance(resp, cri.ExecSyncResponse)
        assert resp.exit_code == 0 and resp.stdout == b"done\n"
        assert code == 0
    finally:
        criproxy.start()  # the pod fixture cleans up through criproxy
