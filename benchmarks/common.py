"""Shared helpers for the benchmarks: percentiles, interleaved timing, RSS, a results line.

Runtimes are compared only interleaved in one run (these machines show CPU steal that drifts), and
results are printed as ratios criproxy / built-in, never asserted.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def time_interleaved(a: Callable[[], object], b: Callable[[], object], n: int, block: int = 50
                     ) -> tuple[list[float], list[float]]:
    """Call a and b n times each, alternating blocks, returning per-call milliseconds."""
    ta: list[float] = []
    tb: list[float] = []
    while len(ta) < n:
        for fn, out in ((a, ta), (b, tb)):
            for _ in range(min(block, n - len(out))):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1000)
    return ta, tb


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(name: str, ours: list[float], theirs: list[float], tail: int = 99) -> dict[str, float]:
    """Print and return p50 and p<tail> of both runtimes and their ratios (criproxy / built-in)."""
    row = {"criproxy_p50_ms": percentile(ours, 50), "builtin_p50_ms": percentile(theirs, 50),
           f"criproxy_p{tail}_ms": percentile(ours, tail), f"builtin_p{tail}_ms": percentile(theirs, tail)}
    row["ratio_p50"] = row["criproxy_p50_ms"] / row["builtin_p50_ms"]
    row[f"ratio_p{tail}"] = row[f"criproxy_p{tail}_ms"] / row[f"builtin_p{tail}_ms"]
    print(f"{name}: criproxy p50 {row['criproxy_p50_ms']:.3f} ms p{tail} {row[f'criproxy_p{tail}_ms']:.3f} ms | "
          f"built-in p50 {row['builtin_p50_ms']:.3f} ms p{tail} {row[f'builtin_p{tail}_ms']:.3f} ms | "
          f"ratio p50 {row['ratio_p50']:.2f}x p{tail} {row[f'ratio_p{tail}']:.2f}x "
          f"(mean {statistics.fmean(ours):.3f})", flush=True)
    return row


def dump(results: dict[str, object]) -> None:
    print("RESULT " + json.dumps(results, sort_keys=True))
