"""The ``criproxy compare`` subcommand: its options, the run, and where the report goes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import grpc

from criproxy import protos as p
from criproxy.compare import html, report
from criproxy.compare.scenarios import SCENARIOS, Ctx, Params
from criproxy.compare.session import CallFailed, Recorder, Side, SpecFetcher, SpecPair, spec_differences

DEFAULT_SCENARIOS = ["pod-lifecycle", "container-lifecycle", "exec-sync", "list-status", "stats"]
DEFAULT_IMAGE = "docker.io/library/busybox:1.36"
MAX_POD_CONFIG_BYTES = 1024 * 1024

EPILOG = """\
scenarios:
  pod-lifecycle        RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox (--reps pods)
  container-lifecycle  Create/Start/ContainerStatus/Stop/RemoveContainer in one pod (--reps containers);
                       the first pair's OCI specs are diffed when --containerd is given
  exec-sync            ExecSync of --exec-command in a running container (--reps calls)
  image-pull           PullImage of --pull-image, removed from both sides before each pull (--reps pulls)
  list-status          lists and statuses with --pods x --containers running per side (--reps rounds)
  churn                --concurrency pods at once: run, create+start, stop, remove (--reps rounds)
  stats                ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats
  kubelet-like         a kubelet's polling every --interval s for --duration s while pods come and go
                       (at most --pods live per side); churn calls are under kubelet-like/churn

The sides are called alternately (A first in even rounds, B first in odd ones), so both see the same
machine. Ratios are A / B. Output: a table on stdout (or JSON with --format json), and report.json and
report.html (self-contained, no network) in --out. Exit status 1 when a scenario failed.

example:
  criproxy compare --a /run/criproxy/criproxy.sock --b /run/containerd/containerd.sock \\
      --containerd /run/containerd/containerd.sock --scenario container-lifecycle --reps 10 --out report
"""


def add_arguments(cp: argparse.ArgumentParser) -> None:
    """The options of ``criproxy compare`` (every one documented in ``--help``)."""
    cp.formatter_class = argparse.RawDescriptionHelpFormatter
    cp.epilog = EPILOG
    cp.add_argument("--a", required=True, metavar="ENDPOINT",
                    help="CRI endpoint A (socket path, unix://PATH or HOST:PORT); ratios are A / B")
    cp.add_argument("--b", required=True, metavar="ENDPOINT", help="CRI endpoint B")
    cp.add_argument("--a-name", default="", help="what to call A in the report (default: its endpoint)")
    cp.add_argument("--b-name", default="", help="what to call B in the report (default: its endpoint)")
    cp.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), default=None, metavar="NAME",
                    help=f"scenario to run, repeatable; one of {', '.join(SCENARIOS)} "
                         f"(default {' '.join(DEFAULT_SCENARIOS)})")
    cp.add_argument("--out", type=Path, default=Path("compare-report"), metavar="DIR",
                    help="directory for report.json and report.html (default ./compare-report)")
    cp.add_argument("--format", choices=["table", "json"], default="table",
                    help="what to print on stdout at the end (default table)")
    cp.add_argument("--image", default=DEFAULT_IMAGE, help=f"container image (default {DEFAULT_IMAGE})")
    cp.add_argument("--pull-image", default="", help="image for image-pull (default: --image)")
    cp.add_argument("--reps", type=int, default=20, help="repetitions per scenario (default 20)")
    cp.add_argument("--pods", type=int, default=5, help="pods per side for list-status, stats and "
                                                         "kubelet-like (default 5)")
    cp.add_argument("--containers", type=int, default=2, help="containers per pod for list-status and stats "
                                                               "(default 2)")
    cp.add_argument("--concurrency", type=int, default=4, help="pods at once in churn (default 4)")
    cp.add_argument("--duration", type=float, default=20.0, help="seconds of kubelet-like (default 20)")
    cp.add_argument("--interval", type=float, default=1.0, help="kubelet-like poll period in s (default 1)")
    cp.add_argument("--command", nargs="+", default=["sleep", "3600"], help="container command "
                                                                              "(default sleep 3600)")
    cp.add_argument("--exec-command", nargs="+", default=["true"], help="ExecSync command (default true)")
    cp.add_argument("--pod-config", type=Path, default=None, metavar="FILE",
                    help="PodSandboxConfig as JSON (CRI field names) every pod starts from; name, uid, "
                         "labels and log directory are set per pod")
    cp.add_argument("--log-dir", type=Path, default=Path("/tmp/criproxy-compare"),
                    help="where pods' log directories are made (default /tmp/criproxy-compare)")
    cp.add_argument("--timeout", type=float, default=60.0, help="deadline of each CRI call in s (default 60)")
    cp.add_argument("--pull-timeout", type=float, default=600.0, help="deadline of PullImage in s (default 600)")
    cp.add_argument("--containerd", default="", metavar="ADDRESS",
                    help="containerd socket both sides use; given, the OCI specs and records each side stored "
                         "for the same CreateContainer are diffed (criproxy.parity)")
    cp.add_argument("--a-namespace", default="criproxy", help="containerd namespace of A (default criproxy)")
    cp.add_argument("--b-namespace", default="k8s.io", help="containerd namespace of B (default k8s.io)")
    cp.add_argument("--a-dir", action="append", default=[], metavar="DIR",
                    help="a directory A keeps its files in (root/state), masked in the spec diff; repeatable")
    cp.add_argument("--b-dir", action="append", default=[], metavar="DIR", help="the same for B")
    cp.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                    help="progress on stderr: a bar on a terminal, plain lines otherwise (default auto)")


class Progress:
    """A bar redrawn in place on a terminal, or one plain line per 10% (and at the end) otherwise."""

    def __init__(self, mode: str, out: TextIO) -> None:
        self.mode = ("bar" if out.isatty() else "lines") if mode == "auto" else mode
        self.out = out
        self._last: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.mode == "none" or total <= 0:
            return
        if self.mode == "bar":
            filled = int(30 * done / total)
            self.out.write(f"\r{what:<22} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            if done >= total:
                self.out.write("\n")
        else:
            step = int(10 * done / total)
            if done < total and self._last.get(what) == step:
                return
            self._last[what] = step
            self.out.write(f"{what}: {done}/{total}\n")
        self.out.flush()

    def line(self, text: str) -> None:
        if self.mode != "none":
            self.out.write(text + "\n")
            self.out.flush()


def _pod_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    if path.stat().st_size > MAX_POD_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than {MAX_POD_CONFIG_BYTES} bytes")
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a JSON object")
    json.dumps(doc)
    return doc


def _version(side: Side) -> str:
    try:
        v = side.runtime.Version(p.cri.VersionRequest(), timeout=10)
    except grpc.RpcError as e:
        raise CallFailed(f"endpoint {side.key.upper()} ({side.endpoint}) does not answer Version: "
                         f"{e.code().name if hasattr(e, 'code') else e}") from None
    return f"{v.runtime_name} {v.runtime_version}"


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    for name in ("reps", "pods", "containers", "concurrency"):
        if getattr(args, name) < 1:
            err.write(f"criproxy compare: --{name} must be at least 1\n")
            return 2
    if args.duration <= 0 or args.interval <= 0 or args.timeout <= 0:
        err.write("criproxy compare: --duration, --interval and --timeout must be positive\n")
        return 2
    try:
        pod_config = _pod_config(args.pod_config)
    except (OSError, ValueError) as e:
        err.write(f"criproxy compare: --pod-config: {e}\n")
        return 2
    run_id = secrets.token_hex(6)
    params = Params(image=args.image, pull_image=args.pull_image, reps=args.reps, pods=args.pods,
                    containers=args.containers, concurrency=args.concurrency, duration=args.duration,
                    interval=args.interval, command=args.command, exec_command=args.exec_command,
                    pod_config=pod_config, log_dir=args.log_dir / run_id, pull_timeout=args.pull_timeout)
    a = Side("a", args.a, args.a_namespace, args.timeout)
    b = Side("b", args.b, args.b_namespace, args.timeout)
    progress = Progress(args.progress, err)
    rec = Recorder(run_id)
    spec_diffs: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    fetcher = SpecFetcher(args.containerd) if args.containerd else None

    def spec_check(pair: SpecPair) -> None:
        if fetcher is None:
            return
        try:
            for d in spec_differences(fetcher, a, b, pair, {"a": args.a_dir, "b": args.b_dir}):
                spec_diffs.append({"scenario": pair.label, "path": d.path, "a": _plain(d.left), "b": _plain(d.right)})
        except (grpc.RpcError, ValueError) as e:
            failures[f"spec diff ({pair.label})"] = str(e.details() if isinstance(e, grpc.RpcError) else e)

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        try:
            versions = {"a": _version(a), "b": _version(b)}
        except CallFailed as e:
            err.write(f"criproxy compare: {e}\n")
            return 1
        progress.line(f"A: {args.a} ({versions['a']}); B: {args.b} ({versions['b']}); run {run_id}")
        ctx = Ctx(a, b, rec, params, progress, spec_check)
        for name in args.scenario or DEFAULT_SCENARIOS:
            rec.scenario = name
            t0 = time.monotonic()
            try:
                SCENARIOS[name](ctx)
            except (CallFailed, grpc.RpcError) as e:
                failures[name] = str(e)
                progress.line(f"{name}: FAILED: {e}")
            finally:
                ctx.cleanup()
            progress.line(f"{name}: done in {time.monotonic() - t0:.1f}s")
    except KeyboardInterrupt:
        failures["interrupted"] = "KeyboardInterrupt"
        try:
            ctx.cleanup()
        except (grpc.RpcError, NameError):
            pass
    finally:
        a.close()
        b.close()
        if fetcher is not None:
            fetcher.close()
    meta = {"a": f"{args.a_name or args.a} ({versions['a']})", "b": f"{args.b_name or args.b} ({versions['b']})",
            "endpoints": {"a": args.a, "b": args.b}, "run_id": run_id,
            "started": started, "host": f"{platform.node()} {platform.release()} {os.cpu_count()} CPUs",
            "containerd": args.containerd, "namespaces": {"a": args.a_namespace, "b": args.b_namespace},
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(params).items()}}
    doc = report.build(rec, meta, spec_diffs, failures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(doc, indent=1, sort_keys=False, default=str))
    (args.out / "report.html").write_text(html.render(doc))
    print(json.dumps(doc, default=str) if args.format == "json" else report.table(doc))
    progress.line(f"report: {args.out / 'report.html'} and {args.out / 'report.json'}")
    return 1 if failures else 0


def _plain(v: Any) -> Any:
    return "<absent>" if repr(v) == "<absent>" else v
