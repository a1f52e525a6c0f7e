"""What the translation trace costs (issues 2 and 15).

1. The wrapper's own work per containerd call — contextvar lookup, perf_counter pair, Step append —
   around a call that does nothing (issue 2: well under 50 µs).
2. The in-process work a RunPodSandbox-sized trace costs at its end (24 steps: key arguments read,
   the entry built, handed to one live reader, and that reader's JSON encoding on the debug socket).
3. RunPodSandbox through two criproxy instances on the same containerd, one tracing (with a
   ``criproxy trace --follow`` reader attached, so the live feed is paid for too) and one started
   with ``--no-trace``, pods in pairs alternating which goes first so CPU steal hits both alike;
   p50 and mean of each, their ratio, and the median of the per-pair ratios (issue 15: tracing
   costs <= 5 % of RunPodSandbox latency). On a shared 2-core machine the end-to-end ratios move by
   several percent from run to run either way; part 2 is the figure that does not.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_trace [PODS]``
(default 30; ``0`` runs part 1 only).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks.bench_sandbox import pod_config, pull_pause, remove_cgroup_parents
from benchmarks.common import dump, percentile
from criproxy import observability, trace
from criproxy.protos import cri, snapshots_pb, tasks_pb
from tests.harness.env import Environment


def record_cost(n: int = 200_000) -> float:
    tr = trace.Trace("bench")
    token = trace.current.set(tr)
    req = tasks_pb.CreateTaskRequest(container_id="c" * 64)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            started = time.perf_counter()
            cur = trace.current.get()
            if cur is not None:
                cur.record("Tasks", "Get", started, "OK", req, None)
            if len(tr.steps) > 1000:
                tr.steps.clear()
        per_call_us = (time.perf_counter() - t0) / n * 1e6
    finally:
        trace.current.reset(token)
    print(f"trace record: {per_call_us:.2f} µs per containerd call over {n} calls (target well under 50 µs)")
    return per_call_us


def end_cost(n: int = 2000) -> float:
    """µs of work per kept 24-step trace: Observer.keep with one subscriber, plus its JSON line."""
    obs = observability.Observer()
    sub = obs.subscribe()
    assert sub is not None
    traces = []
    for _ in range(n):
        tr = trace.Trace("RunPodSandbox")
        tr.request, tr.response = cri.RunPodSandboxRequest(), cri.RunPodSandboxResponse(pod_sandbox_id="a" * 64)
        for _ in range(24):
            tr.record("Snapshots", "Prepare", tr.started, "OK", snapshots_pb.PrepareSnapshotRequest(
                key="k" * 64, parent="sha256:" + "p" * 64, snapshotter="overlayfs"), "criproxy-pull-1")
        traces.append(tr)
    t0 = time.perf_counter()
    for tr in traces:
        obs.observe(tr, "OK", 0.1)
        while sub.queue:
            json.dumps(sub.queue.popleft())
    us = (time.perf_counter() - t0) / n * 1e6
    print(f"trace end of a 24-step RunPodSandbox: {us:.0f} µs (observe, key arguments, one reader's JSON)")
    return us


def run_pods(pods: int) -> dict[str, float]:
    env = Environment.create()
    reader = None
    try:
        on = env.new_criproxy("trace-on", extra_args=["--log-level", "info"], namespace="criproxy-on")
        off = env.new_criproxy("trace-off", extra_args=["--log-level", "info", "--no-trace"],
                               namespace="criproxy-off")
        reader = subprocess.Popen([sys.executable, "-m", "criproxy", "trace", "--follow", "--json",
                                   "--debug-socket", str(on.state / "debug.sock")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times: dict[str, list[float]] = {"on": [], "off": []}
        pairs: list[float] = []
        with on.client() as c_on, off.client() as c_off:
            clients = (("on", c_on), ("off", c_off))
            for _, c in clients:
                pull_pause(c, env.pause_image)
            for i in range(pods + 2):                      # the first two of each: warm-up
                for name, c in clients if i % 2 == 0 else reversed(clients):
                    t0 = time.perf_counter()
                    sid = c.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config(name, i)),
                                                  timeout=240).pod_sandbox_id
                    ms = (time.perf_counter() - t0) * 1000
                    if i >= 2:
                        times[name].append(ms)
                    c.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))
                    c.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))
                if i >= 2:
                    pairs.append(times["on"][-1] / times["off"][-1])
        row = {"on_p50_ms": percentile(times["on"], 50), "off_p50_ms": percentile(times["off"], 50),
               "on_mean_ms": statistics.fmean(times["on"]), "off_mean_ms": statistics.fmean(times["off"])}
        row["ratio_p50"] = row["on_p50_ms"] / row["off_p50_ms"]
        row["ratio_mean"] = row["on_mean_ms"] / row["off_mean_ms"]
        row["ratio_pairs_median"] = statistics.median(pairs)
        print(f"RunPodSandbox x{pods}: tracing on p50 {row['on_p50_ms']:.1f} ms mean {row['on_mean_ms']:.1f} ms | "
              f"off p50 {row['off_p50_ms']:.1f} ms mean {row['off_mean_ms']:.1f} ms | ratio p50 "
              f"{row['ratio_p50']:.3f}x mean {row['ratio_mean']:.3f}x, "
              f"median of pairs {row['ratio_pairs_median']:.3f}x "
              "(target <= 1.05x)", flush=True)
        return row
    finally:
        if reader is not None:
            reader.terminate()
            reader.wait(10)
        env.close()
        remove_cgroup_parents()


def main(pods: int = 30) -> None:
    results: dict[str, object] = {"bench": "trace", "record_us": record_cost(), "end_us": end_cost()}
    if pods:
        results["run_pod_sandbox"] = run_pods(pods)
    dump(results)


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
