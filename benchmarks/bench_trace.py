"""Cost of recording one containerd call into the translation trace (issue 2: well under 50 µs).

Measures the wrapper's own work — contextvar lookup, perf_counter pair, Step append — around a call
that does nothing, so the figure is the overhead every containerd call pays.
Run: ``.venv/bin/python -m benchmarks.bench_trace``.
"""

from __future__ import annotations

import time

from criproxy import trace


def main(n: int = 200_000) -> None:
    tr = trace.Trace("bench")
    token = trace.current.set(tr)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            started = time.perf_counter()
            cur = trace.current.get()
            if cur is not None:
                cur.record("Tasks", "Get", started, "OK")
        per_call_us = (time.perf_counter() - t0) / n * 1e6
    finally:
        trace.current.reset(token)
    print(f"trace record: {per_call_us:.2f} µs per containerd call over {n} calls (target well under 50 µs)")


if __name__ == "__main__":
    main()
