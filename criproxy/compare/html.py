"""The self-contained HTML report: inline CSS, inline SVG plots drawn here, a few lines of inline
JS, no external resource, so it opens in any browser without network access."""

from __future__ import annotations

import json
import math
import random
from html import escape
from typing import Any

from criproxy.compare.stats import percentile

COLORS = {"a": "#1f77b4", "b": "#ff7f0e"}
MAX_DOTS = 400  # per side and RPC drawn in a distribution plot

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px} .meta{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .bad{color:#b00020;font-weight:600} .good{color:#137333}
.key span{display:inline-block;margin-right:14px} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg text{font-size:10px;fill:#444} .mono{font-family:ui-monospace,Menlo,monospace;word-break:break-all}
input{margin:4px 0;padding:3px;width:320px}
"""

JS = """
document.querySelectorAll('input[data-filter]').forEach(function(box){
  box.addEventListener('input',function(){
    var t=document.getElementById(box.dataset.filter),q=box.value.toLowerCase();
    t.querySelectorAll('tbody tr').forEach(function(r){
      r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';
    });
  });
});
document.body.dataset.ready='1';
"""


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _ratio_cls(r: float | None) -> str:
    if r is None:
        return ""
    return "bad" if r > 1.1 else "good" if r < 0.9 else ""


def _ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo <= v <= hi:
                out.append(v)
    return out


def distribution_svg(a: list[float], b: list[float], width: int = 640) -> str:
    """Both sides' latencies as jittered dots on a log axis, with p50/p95/p99 marks."""
    values = [v for v in a + b if v > 0]
    if not values:
        return ""
    lo, hi = min(values) / 1.2, max(values) * 1.2
    left, right = 40, width - 10

    def x(v: float) -> float:
        return left + (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (right - left)

    rng = random.Random(0)
    parts = [f'<svg class="dist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="92" '
             f'viewBox="0 0 {width} 92" role="img">']
    for row, (key, vals) in enumerate((("a", a), ("b", b))):
        y = 18 + row * 30
        parts.append(f'<text x="4" y="{y + 4}">{key.upper()}</text>')
        shown = vals if len(vals) <= MAX_DOTS else rng.sample(vals, MAX_DOTS)
        for v in shown:
            if v > 0:
                parts.append(f'<circle cx="{x(v):.1f}" cy="{y + rng.uniform(-7, 7):.1f}" r="2" '
                             f'fill="{COLORS[key]}" fill-opacity="0.35"/>')
        for q, w in ((50, 3), (95, 1.5), (99, 1)):
            if vals:
                pv = percentile(vals, q)
                parts.append(f'<line x1="{x(pv):.1f}" x2="{x(pv):.1f}" y1="{y - 11}" y2="{y + 11}" stroke="#000" '
                             f'stroke-width="{w}"><title>{key.upper()} p{q} {pv:.3f} ms</title></line>')
    parts.append(f'<line x1="{left}" x2="{right}" y1="74" y2="74" stroke="#999"/>')
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="74" y2="78" stroke="#999"/>'
                     f'<text x="{x(t):.1f}" y="89" text-anchor="middle">{t:g} ms</text>')
    parts.append("</svg>")
    return "".join(parts)


def ratio_svg(rows: list[tuple[str, float | None]], width: int = 640) -> str:
    """Horizontal bars of p50 ratio A / B on a log2 axis centred on 1 (left: A faster)."""
    h = 16 * len(rows) + 30
    mid, half, label_w = (width + 200) / 2, (width - 200) / 2 - 10, 200
    span = max([abs(math.log2(r)) for _, r in rows if r] + [1.0])
    parts = [f'<svg class="ratios" xmlns="http://www.w3.org/2000/svg" width="{width + label_w}" height="{h}" '
             f'viewBox="0 0 {width + label_w} {h}" role="img">']
    for i, (name, r) in enumerate(rows):
        y = 10 + i * 16
        parts.append(f'<text x="4" y="{y + 10}">{escape(name)}</text>')
        if r:
            w = math.log2(r) / span * half
            color = "#b00020" if r > 1.1 else "#137333" if r < 0.9 else "#888"
            parts.append(f'<rect x="{min(mid, mid + w):.1f}" y="{y}" width="{abs(w):.1f}" height="12" fill="{color}">'
                         f'<title>{escape(name)}: {r:.2f}x</title></rect>'
                         f'<text x="{mid + w + (4 if w >= 0 else -4):.1f}" y="{y + 10}" '
                         f'text-anchor="{"start" if w >= 0 else "end"}">{r:.2f}x</text>')
    parts.append(f'<line x1="{mid}" x2="{mid}" y1="4" y2="{h - 16}" stroke="#000"/>'
                 f'<text x="{mid}" y="{h - 4}" text-anchor="middle">1x (A = B); left: A faster, right: A slower</text>')
    parts.append("</svg>")
    return "".join(parts)


def _diff_rows(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    out = []
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="l mono">{escape(_cell(r.get(c)))}</td>' for c in cols) + "</tr>")
    return "".join(out)


def _cell(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= 600 else s[:590] + "…"


def render(doc: dict[str, Any]) -> str:
    """The whole report page."""
    meta = doc["meta"]
    body = [f"<h1>criproxy compare</h1><div class='meta'>A = <b>{escape(meta['a'])}</b> &nbsp; "
            f"B = <b>{escape(meta['b'])}</b> &nbsp; ratio = A / B &nbsp; run {escape(meta['run_id'])} at "
            f"{escape(meta['started'])} &nbsp; {escape(meta.get('host', ''))}</div>",
            f"<div class='meta'>parameters: <span class='mono'>{escape(json.dumps(meta['params'], sort_keys=True))}"
            "</span></div>",
            "<div class='key'><span><i class='sw' style='background:#1f77b4'></i>A</span>"
            "<span><i class='sw' style='background:#ff7f0e'></i>B</span>"
            "<span>marks: p50 (thick), p95, p99</span></div>"]
    ratio_rows: list[tuple[str, float | None]] = []
    summary = ["<table id='summary'><thead><tr><th class='l'>scenario</th><th class='l'>rpc</th><th>n A</th>"
               "<th>n B</th>" + "".join(f"<th>A p{q}</th><th>B p{q}</th><th>p{q} ratio</th>" for q in (50, 95, 99))
               + "<th class='l'>status codes</th></tr></thead><tbody>"]
    code_rows, answer_rows = [], []
    for name, rpcs in doc["scenarios"].items():
        for rpc, s in rpcs.items():
            ratio_rows.append((f"{name} {rpc}", s["ratio_p50"]))
            codes = f"A {s['codes']['a']} B {s['codes']['b']}"
            summary.append(
                f"<tr><td class='l'>{escape(name)}</td><td class='l'>{escape(rpc)}</td><td>{s['n']['a']}</td>"
                f"<td>{s['n']['b']}</td>"
                + "".join(f"<td>{_fmt(s[f'p{q}']['a'])}</td><td>{_fmt(s[f'p{q}']['b'])}</td>"
                          f"<td class='{_ratio_cls(s[f'ratio_p{q}'])}'>{_fmt(s[f'ratio_p{q}'])}x</td>"
                          for q in (50, 95, 99))
                + f"<td class='l {'bad' if s['codes_differ'] else ''}'>{escape(codes)}</td></tr>")
            if s["codes_differ"]:
                code_rows.append({"scenario": name, "rpc": rpc, "a": s["codes"]["a"], "b": s["codes"]["b"]})
            for d in s["answer_differences"]:
                answer_rows.append({"scenario": name, "rpc": rpc, **d})
    summary.append("</tbody></table>")
    body.append("<h2>Latency per RPC (ms)</h2>" + "".join(summary))
    body.append("<h2>Ratio A / B at p50</h2>" + ratio_svg(ratio_rows))
    body.append("<h2>Latency distributions</h2>")
    for name, rpcs in doc["scenarios"].items():
        body.append(f"<h3>{escape(name)}</h3>")
        for rpc, s in rpcs.items():
            body.append(f"<div class='plot'><div class='meta'>{escape(rpc)}</div>"
                        f"{distribution_svg(s['samples_ms']['a'], s['samples_ms']['b'])}</div>")
    body.append(f"<h2>Status code differences ({len(code_rows)})</h2>")
    body.append("<table><thead><tr><th class='l'>scenario</th><th class='l'>rpc</th><th class='l'>A</th>"
                "<th class='l'>B</th></tr></thead><tbody>" + _diff_rows(code_rows, ("scenario", "rpc", "a", "b"))
                + "</tbody></table>")
    body.append(f"<h2>Answer differences ({len(answer_rows)}; IDs, times, IPs masked)</h2>"
                "<input data-filter='answers' placeholder='filter'>"
                "<table id='answers'><thead><tr><th class='l'>scenario</th><th class='l'>rpc</th>"
                "<th class='l'>path</th><th class='l'>A</th><th class='l'>B</th><th>pairs</th></tr></thead><tbody>"
                + _diff_rows(answer_rows, ("scenario", "rpc", "path", "a", "b", "count")) + "</tbody></table>")
    specs = doc["spec_differences"]
    body.append(f"<h2>OCI spec and record differences ({len(specs)})</h2>"
                + ("" if meta.get("containerd") else "<div class='meta'>not compared: no --containerd given</div>")
                + "<input data-filter='specs' placeholder='filter'>"
                "<table id='specs'><thead><tr><th class='l'>scenario</th><th class='l'>path</th><th class='l'>A</th>"
                "<th class='l'>B</th></tr></thead><tbody>" + _diff_rows(specs, ("scenario", "path", "a", "b"))
                + "</tbody></table>")
    if doc["failures"]:
        body.append("<h2 class='bad'>Failures</h2><table><tbody>" + "".join(
            f"<tr><td class='l'>{escape(k)}</td><td class='l mono'>{escape(v)}</td></tr>"
            for k, v in doc["failures"].items()) + "</tbody></table>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>criproxy compare</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}<script>{JS}</script></body></html>")
