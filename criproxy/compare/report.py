"""The report as JSON (the record of a run) and as a terminal table."""

from __future__ import annotations

from typing import Any

from criproxy.compare.session import Recorder
from criproxy.compare.stats import summarize

MAX_KEPT_SAMPLES = 2000  # per RPC and side in the JSON, evenly thinned, for the distribution plots


def _thin(values: list[float]) -> list[float]:
    if len(values) <= MAX_KEPT_SAMPLES:
        return [round(v, 4) for v in values]
    step = len(values) / MAX_KEPT_SAMPLES
    return [round(values[int(i * step)], 4) for i in range(MAX_KEPT_SAMPLES)]


def build(rec: Recorder, meta: dict[str, Any], spec_diffs: list[dict[str, Any]],
          failures: dict[str, str]) -> dict[str, Any]:
    """The JSON document: per scenario and RPC the summary (of the calls that answered OK; ``codes``
    counts every call), codes, answer differences and samples."""
    rec.answer_diffs()
    scenarios: dict[str, Any] = {}
    for name, rpcs in rec.records.items():
        out: dict[str, Any] = {}
        for rpc, r in sorted(rpcs.items()):
            codes_differ = set(r.codes["a"]) != set(r.codes["b"])
            out[rpc] = {**summarize(r.ms["a"], r.ms["b"]), "codes": r.codes, "codes_differ": codes_differ,
                        "answer_differences": [{"path": k, **v} for k, v in sorted(r.diffs.items())],
                        "samples_ms": {"a": _thin(r.ms["a"]), "b": _thin(r.ms["b"])}}
        scenarios[name] = out
    return {"meta": meta, "scenarios": scenarios, "spec_differences": spec_diffs, "failures": failures}


def _f(v: float | None, unit: str = "") -> str:
    return "-" if v is None else (f"{v:.2f}x" if unit == "x" else f"{v:.2f}")


def table(doc: dict[str, Any]) -> str:
    """A fixed-width table: per scenario and RPC the p50/p95/p99 of A and B (ms) and the ratios."""
    head = (f"{'scenario':<22} {'rpc':<20} {'n':>5} {'A p50':>8} {'B p50':>8} {'p50':>7} "
            f"{'A p95':>8} {'B p95':>8} {'p95':>7} {'A p99':>8} {'B p99':>8} {'p99':>7}  notes")
    lines = [f"A = {doc['meta']['a']}", f"B = {doc['meta']['b']}", "times in ms; ratio = A / B", head,
             "-" * len(head)]
    for name, rpcs in doc["scenarios"].items():
        for rpc, s in rpcs.items():
            notes = []
            if s["codes_differ"]:
                notes.append(f"codes A {s['codes']['a']} B {s['codes']['b']}")
            if s["answer_differences"]:
                notes.append(f"{len(s['answer_differences'])} answer differences")
            lines.append(
                f"{name:<22} {rpc:<20} {s['n']['a']:>5} "
                + " ".join(f"{_f(s[f'p{q}']['a']):>8} {_f(s[f'p{q}']['b']):>8} {_f(s[f'ratio_p{q}'], 'x'):>7}"
                           for q in (50, 95, 99))
                + ("  " + "; ".join(notes) if notes else ""))
    if doc["spec_differences"]:
        lines.append("")
        lines.append(f"spec/record differences ({len(doc['spec_differences'])}):")
        for d in doc["spec_differences"][:40]:
            lines.append(f"  [{d['scenario']}] {d['path']}: A={d['a']} B={d['b']}")
    for name, err in doc["failures"].items():
        lines.append(f"FAILED {name}: {err}")
    return "\n".join(lines)
