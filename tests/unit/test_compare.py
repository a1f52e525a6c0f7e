"""Pure pieces of ``criproxy compare``: percentiles and ratios, answer masking, the HTML page."""

from __future__ import annotations

import math

from criproxy.compare import html
from criproxy.compare.mask import RUN_LABEL, answer_document, mask
from criproxy.compare.stats import percentile, summarize
from criproxy.protos import cri


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_summary_ratio_is_a_over_b() -> None:
    s = summarize([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert s["ratio_p50"] == 2.0 and s["p50"] == {"a": 2.0, "b": 1.0} and s["n"] == {"a": 3, "b": 3}
    assert summarize([1.0], [])["ratio_p50"] is None


def test_mask_ids_times_ips_and_usage() -> None:
    doc = {"id": "x", "pod_sandbox_id": "y", "created_at": "1700000000",
           "log_path": "/var/log/pods/" + "ab" * 32 + "/c/0.log",
           "network": {"ip": "10.88.0.7", "additional_ips": [{"ip": "fd00::7"}]}, "image": "reg:5000/a:b",
           "usage": {"working_set_bytes": {"value": "123"}}, "state": "CONTAINER_RUNNING", "attempt": 3}
    assert mask(doc) == {"id": "<id>", "pod_sandbox_id": "<id>", "created_at": "<time>",
                         "log_path": "/var/log/pods/<id>/c/0.log",
                         "network": {"ip": "<ip>", "additional_ips": [{"ip": "<ip>"}]}, "image": "reg:5000/a:b",
                         "usage": {"working_set_bytes": {"value": "<n>"}}, "state": "CONTAINER_RUNNING", "attempt": 3}


def test_list_answers_keep_only_this_runs_objects() -> None:
    resp = cri.ListPodSandboxResponse(items=[
        cri.PodSandbox(id="1" * 64, labels={RUN_LABEL: "run1"}, state=cri.SANDBOX_NOTREADY),
        cri.PodSandbox(id="2" * 64, labels={RUN_LABEL: "other"}),
        cri.PodSandbox(id="3" * 64)])
    doc = answer_document(resp, "run1")
    assert doc == {"items": [{"id": "<id>", "labels": {RUN_LABEL: "run1"}, "state": "SANDBOX_NOTREADY"}]}


def _doc() -> dict[str, object]:
    samples = {"a": [1.0, 2.0, 3.0], "b": [1.0, 1.5, 2.0]}
    rpc = {**summarize(samples["a"], samples["b"]), "codes": {"a": {"OK": 3}, "b": {"OK": 2, "NOT_FOUND": 1}},
           "codes_differ": True, "answer_differences": [{"path": "status.reason", "a": "<x>", "b": "y",
                                                         "count": 1}],
           "samples_ms": samples}
    return {"meta": {"a": "A <sock>", "b": "B", "run_id": "r", "started": "t", "host": "h", "params": {},
                     "containerd": ""},
            "scenarios": {"s1": {"Version": rpc, "Status": rpc}},
            "spec_differences": [{"scenario": "s1", "path": "process.env[X]", "a": "1", "b": "<absent>"}],
            "failures": {}}


def test_html_has_one_plot_per_rpc_and_escapes_text() -> None:
    page = html.render(_doc())
    assert page.count('<svg class="dist"') == 2 and page.count('<svg class="ratios"') == 1
    assert "A &lt;sock&gt;" in page and "A <sock>" not in page
    assert "process.env[X]" in page and "NOT_FOUND" in page
    assert "<link" not in page and "src=" not in page   # nothing fetched: no stylesheet or script URL


def test_every_compare_option_is_documented() -> None:
    import argparse

    from criproxy.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    compare = sub.choices["compare"]
    options = [a for a in compare._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 20
    for a in options:
        assert a.help and len(a.help) > 10, a.option_strings
    text = compare.format_help()
    for name in ("pod-lifecycle", "container-lifecycle", "exec-sync", "image-pull", "list-status", "churn",
                 "stats", "kubelet-like", "--a-namespace", "--containerd"):
        assert name in text
