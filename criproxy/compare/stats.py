"""Percentiles and the per-RPC summary of both sides."""

from __future__ import annotations

import math
from typing import Any

QUANTILES = (50, 95, 99)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    idx = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[idx]


def ratio(a: float, b: float) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


def summarize(a: list[float], b: list[float]) -> dict[str, Any]:
    """Count and p50/p95/p99 of each side in milliseconds, and each percentile's ratio A / B."""
    out: dict[str, Any] = {"n": {"a": len(a), "b": len(b)}}
    for q in QUANTILES:
        pa, pb = percentile(a, q), percentile(b, q)
        out[f"p{q}"] = {"a": None if math.isnan(pa) else round(pa, 4), "b": None if math.isnan(pb) else round(pb, 4)}
        r = ratio(pa, pb)
        out[f"ratio_p{q}"] = None if r is None else round(r, 4)
    return out
