"""Streaming through criproxy vs containerd's built-in CRI, on the same containerd, in one run.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_streaming [EXECS]``.

1. An interactive-style exec of ``true``, end to end: the Exec RPC, the connection to the returned URL,
   until the exit status has arrived; p50/p95 over EXECS (default 100) per transport (WebSocket
   ``v4.channel.k8s.io``, which both serve, and SPDY/3.1), interleaved in blocks.
2. Throughput: 64 MiB of stdout from ``head -c`` through each runtime's streaming server, median of 3.
3. criproxy's RSS after all that.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from benchmarks.bench_containers import Side, grow, row
from benchmarks.common import dump, rss_mib, time_interleaved
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.integration.streaming import spdyclient, wsclient

THROUGHPUT_BYTES = 64 * 1024 * 1024


def exec_url(client: CriClient, cid: str, *cmd: str) -> str:
    req = cri.ExecRequest(container_id=cid, cmd=list(cmd), stdout=True, stderr=True)
    return str(client.runtime.Exec(req).url)


async def ws_exec(client: CriClient, cid: str, *cmd: str) -> int:
    res = await wsclient.run(exec_url(client, cid, *cmd), protocols=("v4.channel.k8s.io",), timeout=120)
    assert res.exit_code == 0, res.error
    return len(res.stdout)


async def spdy_exec(client: CriClient, cid: str, *cmd: str) -> int:
    c = await spdyclient.connect(exec_url(client, cid, *cmd))
    try:
        err = await c.open({"streamType": "error"})
        out = await c.open({"streamType": "stdout"})
        await c.open({"streamType": "stderr"})
        data = await out.read_all(timeout=120)
        status = await err.read_all(timeout=120)
        assert b"Success" in status, status
        return len(data)
    finally:
        await c.close()


def throughput(loop: asyncio.AbstractEventLoop, client: CriClient, cid: str) -> float:
    """MiB/s of stdout through the streaming server (median of 3)."""
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        n = loop.run_until_complete(ws_exec(client, cid, "head", "-c", str(THROUGHPUT_BYTES), "/dev/zero"))
        assert n == THROUGHPUT_BYTES
        rates.append(n / (1024 * 1024) / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench(env: Environment, execs: int) -> dict[str, object]:
    results: dict[str, object] = {"bench": "streaming", "execs": execs}
    proc = env.new_criproxy("bench-stream", extra_args=["--log-level", "info"])
    loop = asyncio.new_event_loop()
    with proc.client() as ours_c, env.builtin_cri() as theirs_c:
        ours, theirs = Side("criproxy", ours_c, env.busybox_image), Side("builtin", theirs_c, env.busybox_image)
        try:
            grow(ours, theirs, 1)
            o, t = ours.ids[0], theirs.ids[0]
            for name, fn in (("websocket", ws_exec), ("spdy", spdy_exec)):
                loop.run_until_complete(fn(ours_c, o, "true"))          # warm-up (starts criproxy's server)
                to, tt = time_interleaved(lambda f=fn: loop.run_until_complete(f(ours_c, o, "true")),
                                          lambda f=fn: loop.run_until_complete(f(theirs_c, t, "true")),
                                          execs, block=10)
                results[f"exec_{name}"] = row(f"exec true over {name} x{execs}", to, tt)
            mo, mt = throughput(loop, ours_c, o), throughput(loop, theirs_c, t)
            results["throughput_mib_s"] = {"criproxy": mo, "builtin": mt, "ratio": mo / mt}
            print(f"stdout throughput: criproxy {mo:.0f} MiB/s | built-in {mt:.0f} MiB/s | ratio {mo / mt:.2f}x")
            results["criproxy_rss_mib"] = rss_mib(proc.pid or 0)
            print(f"criproxy RSS after streaming: {results['criproxy_rss_mib']:.1f} MiB", flush=True)
        finally:
            ours.cleanup()
            theirs.cleanup()
            loop.close()
    return results


def main(execs: int = 100) -> None:
    env = Environment.create()
    try:
        dump(bench(env, execs))
    finally:
        env.close()


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
