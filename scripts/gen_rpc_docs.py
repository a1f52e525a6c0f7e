#!/usr/bin/env python3
"""Generate docs/rpc/: one page per CRI RPC from traces recorded against the real containerd.

Brings up the test environment (root, after scripts/install-test-deps.sh), drives every CRI RPC
through criproxy's socket in the order a kubelet would (a pod with one busybox container, from
image pull to removal), then calls each RPC once more with input it must refuse, and reads the
translation traces from the debug socket after each call. Each page joins the recorded containerd
calls with the hand-written meaning, storage and error text of docs/rpc/rpcs.toml; docs/rpc/README.md
maps every RPC of the CRI protos to its page and status.

    .venv/bin/python scripts/gen_rpc_docs.py           # rewrite docs/rpc/
    .venv/bin/python scripts/gen_rpc_docs.py --check   # fail if the calls differ from the pages

``--check`` (run by tests/integration/test_rpc_docs.py, so by CI) compares the structure only: per
RPC, the containerd calls and their status codes as a multiset, not their timings, arguments or
order (calls a handler makes concurrently finish in a different order from run to run). Calls an
RPC makes only sometimes (a read that a cache filled by a concurrent event answers first) are listed
per RPC as ``optional`` in rpcs.toml, with the reason, and left out of the comparison.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import socket
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from criproxy import cri as handlers  # noqa: E402
from criproxy.protos import cri  # noqa: E402
from tests.harness.env import Environment  # noqa: E402

OUT = ROOT / "docs" / "rpc"
DATA = OUT / "rpcs.toml"
BEGIN, END = "<!-- calls:begin -->", "<!-- calls:end -->"
MISSING = "does-not-exist"


@dataclass
class Seen:
    """What one RPC did in the run: the traced call's containerd calls (None: answered without any)
    and the refusal probe's code, message and calls."""

    ok_steps: list[list[Any]] | None = None
    ok_done: bool = False
    ok_code: str = ""
    scenario: str = ""
    probe: str = ""
    probe_code: str = ""
    probe_message: str = ""
    probe_steps: list[list[Any]] = field(default_factory=list)


def http_get(path: Path, target: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: criproxy\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode().partition("\r\n\r\n")[2]


def mask(text: str) -> str:
    """Take what changes from run to run out of shown text: IDs, ports, lease and ingest numbers."""
    text = re.sub(r"\b[0-9a-f]{64}\b", "<id>", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "<exec-id>", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"-\d{6,}-[A-Za-z0-9_-]{4}\b", "-<n>", text)
    text = re.sub(r"/\S*/(criproxy-test|cpt)[^\s'\"]*", "<path>", text)
    return text


class Recorder:
    """Calls RPCs and files the traces each call left in the debug socket's ring."""

    def __init__(self, debug: Path):
        self.debug = debug
        self.seen: dict[str, Seen] = collections.defaultdict(Seen)
        self.last = self._max_id()

    def _max_id(self) -> int:
        traces = json.loads(http_get(self.debug, "/traces"))
        return max((int(t["id"]) for t in traces), default=0)

    def _new(self, rpc: str) -> list[dict[str, Any]]:
        time.sleep(0.05)         # a server stream is accounted just after its last message
        traces = [t for t in json.loads(http_get(self.debug, "/traces")) if int(t["id"]) > self.last]
        if traces:
            self.last = max(int(t["id"]) for t in traces)
        return [t for t in traces if t["rpc"] == rpc]

    def ok(self, rpc: str, scenario: str, call: Callable[[], Any]) -> Any:
        """A call that must succeed; the first one per RPC is the one its page shows."""
        try:
            result = call()
        except grpc.RpcError as e:
            if rpc != "GetContainerEvents" or e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            result = None
        traces = self._new(rpc)
        seen = self.seen[rpc]
        if not seen.ok_done:
            seen.ok_done, seen.scenario = True, scenario
            seen.ok_steps = traces[0]["steps"] if traces else None
            seen.ok_code = traces[0]["code"] if traces else "OK"
        return result

    def refused(self, rpc: str, probe: str, call: Callable[[], Any]) -> None:
        """A call with input the RPC should refuse; whatever it answers is recorded."""
        seen = self.seen[rpc]
        try:
            call()
            seen.probe_code, seen.probe_message = "OK", ""
        except grpc.RpcError as e:
            seen.probe_code, seen.probe_message = e.code().name, mask(e.details() or "")
        traces = self._new(rpc)
        seen.probe = probe
        seen.probe_steps = traces[0]["steps"] if traces else []


def drain(stream: Any) -> list[Any]:
    return list(stream)


def drive(env: Environment, rt: Any, im: Any, logs: Path, rec: Recorder) -> None:
    """Every implemented RPC, in a kubelet's order, then the refusals."""
    ok = rec.ok
    ok("Version", "the kubelet's first call", lambda: rt.Version(cri.VersionRequest()))
    ok("Status", "a node status poll", lambda: rt.Status(cri.StatusRequest()))
    ok("RuntimeConfig", "asked once at kubelet start", lambda: rt.RuntimeConfig(cri.RuntimeConfigRequest()))
    ok("UpdateRuntimeConfig", "the node's pod CIDR handed over", lambda: rt.UpdateRuntimeConfig(
        cri.UpdateRuntimeConfigRequest(runtime_config=cri.RuntimeConfig(
            network_config=cri.NetworkConfig(pod_cidr="10.244.0.0/24")))))
    uid = str(uuid.uuid4())
    pod = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="web", namespace="default", uid=uid),
                               hostname="web", log_directory=str(logs / uid))
    sid = ok("RunPodSandbox", "the first pod on the node (the pause image is pulled on the way)",
             lambda: rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod), timeout=120)).pod_sandbox_id
    ok("PodSandboxStatus", "the pod just started", lambda: rt.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=sid)))
    ok("ListPodSandbox", "all pods", lambda: rt.ListPodSandbox(cri.ListPodSandboxRequest()))
    ok("StreamPodSandboxes", "all pods", lambda: drain(rt.StreamPodSandboxes(cri.StreamPodSandboxesRequest())))
    spec = cri.ImageSpec(image=env.busybox_image)
    ok("ImageStatus", "an image that is not there yet", lambda: im.ImageStatus(cri.ImageStatusRequest(image=spec)))
    ok("PullImage", "busybox from the test registry", lambda: im.PullImage(cri.PullImageRequest(image=spec),
                                                                          timeout=120))
    ok("ListImages", "all images", lambda: im.ListImages(cri.ListImagesRequest()))
    ok("StreamImages", "all images", lambda: drain(im.StreamImages(cri.StreamImagesRequest())))
    ok("ImageFsInfo", "the first measurement", lambda: im.ImageFsInfo(cri.ImageFsInfoRequest()))
    ctr = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="app"), image=spec,
                              command=["sh", "-c", "echo hello; sleep 3600"], log_path="app/0.log")
    cid = ok("CreateContainer", "a busybox container in the pod", lambda: rt.CreateContainer(
        cri.CreateContainerRequest(pod_sandbox_id=sid, config=ctr, sandbox_config=pod))).container_id
    ok("StartContainer", "the container just created", lambda: rt.StartContainer(
        cri.StartContainerRequest(container_id=cid)))
    ok("ContainerStatus", "the running container", lambda: rt.ContainerStatus(
        cri.ContainerStatusRequest(container_id=cid)))
    ok("ListContainers", "all containers", lambda: rt.ListContainers(cri.ListContainersRequest()))
    ok("StreamContainers", "all containers", lambda: drain(rt.StreamContainers(cri.StreamContainersRequest())))
    ok("ContainerStats", "the running container", lambda: rt.ContainerStats(
        cri.ContainerStatsRequest(container_id=cid)))
    ok("ListContainerStats", "all containers", lambda: rt.ListContainerStats(cri.ListContainerStatsRequest()))
    ok("StreamContainerStats", "all containers", lambda: drain(rt.StreamContainerStats(
        cri.StreamContainerStatsRequest())))
    ok("PodSandboxStats", "the pod", lambda: rt.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=sid)))
    ok("ListPodSandboxStats", "all pods", lambda: rt.ListPodSandboxStats(cri.ListPodSandboxStatsRequest()))
    ok("StreamPodSandboxStats", "all pods", lambda: drain(rt.StreamPodSandboxStats(
        cri.StreamPodSandboxStatsRequest())))
    ok("ListMetricDescriptors", "once", lambda: rt.ListMetricDescriptors(cri.ListMetricDescriptorsRequest()))
    ok("ListPodSandboxMetrics", "all pods", lambda: rt.ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest()))
    ok("StreamPodSandboxMetrics", "all pods", lambda: drain(rt.StreamPodSandboxMetrics(
        cri.StreamPodSandboxMetricsRequest())))
    res = cri.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=256 * 1024 * 1024)
    ok("UpdateContainerResources", "a new CPU weight and memory limit", lambda: rt.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(container_id=cid, linux=res)))
    ok("UpdatePodSandboxResources", "the pod resized", lambda: rt.UpdatePodSandboxResources(
        cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id=sid, resources=res)))
    ok("ReopenContainerLog", "after a log rotation", lambda: rt.ReopenContainerLog(
        cri.ReopenContainerLogRequest(container_id=cid)))
    ok("ExecSync", "a probe running `true`", lambda: rt.ExecSync(
        cri.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10)))
    ok("Exec", "kubectl exec asks for a URL", lambda: rt.Exec(
        cri.ExecRequest(container_id=cid, cmd=["sh"], stdin=True, stdout=True)))
    ok("Attach", "kubectl attach asks for a URL", lambda: rt.Attach(
        cri.AttachRequest(container_id=cid, stdout=True)))
    ok("PortForward", "kubectl port-forward asks for a URL", lambda: rt.PortForward(
        cri.PortForwardRequest(pod_sandbox_id=sid, port=[80])))
    ok("GetContainerEvents", "a subscriber for one second", lambda: drain(rt.GetContainerEvents(
        cri.GetEventsRequest(), timeout=1)))
    ok("StopContainer", "the running container, 2 s grace", lambda: rt.StopContainer(
        cri.StopContainerRequest(container_id=cid, timeout=2)))
    ok("RemoveContainer", "the stopped container", lambda: rt.RemoveContainer(
        cri.RemoveContainerRequest(container_id=cid)))
    ok("StopPodSandbox", "the pod, its containers gone", lambda: rt.StopPodSandbox(
        cri.StopPodSandboxRequest(pod_sandbox_id=sid)))
    ok("RemovePodSandbox", "the stopped pod", lambda: rt.RemovePodSandbox(
        cri.RemovePodSandboxRequest(pod_sandbox_id=sid)))
    ok("RemoveImage", "busybox, no container using it", lambda: im.RemoveImage(cri.RemoveImageRequest(image=spec)))

    no = rec.refused
    no("RunPodSandbox", "a config without metadata", lambda: rt.RunPodSandbox(
        cri.RunPodSandboxRequest(config=cri.PodSandboxConfig())))
    for rpc in ("StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "PodSandboxStats",
                "UpdatePodSandboxResources"):
        req = getattr(cri, f"{rpc}Request")(pod_sandbox_id=MISSING)
        no(rpc, "an unknown pod sandbox ID", lambda rpc=rpc, req=req: getattr(rt, rpc)(req))
    no("PortForward", "an unknown pod sandbox ID", lambda: rt.PortForward(
        cri.PortForwardRequest(pod_sandbox_id=MISSING, port=[80])))
    for rpc in ("StartContainer", "StopContainer", "RemoveContainer", "ContainerStatus", "ContainerStats",
                "ReopenContainerLog"):
        req = getattr(cri, f"{rpc}Request")(container_id=MISSING)
        no(rpc, "an unknown container ID", lambda rpc=rpc, req=req: getattr(rt, rpc)(req))
    no("UpdateContainerResources", "an unknown container ID", lambda: rt.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(container_id=MISSING, linux=res)))
    no("ExecSync", "an unknown container ID", lambda: rt.ExecSync(
        cri.ExecSyncRequest(container_id=MISSING, cmd=["true"], timeout=5)))
    no("Exec", "an unknown container ID", lambda: rt.Exec(
        cri.ExecRequest(container_id=MISSING, cmd=["sh"], stdout=True)))
    no("Attach", "an unknown container ID", lambda: rt.Attach(cri.AttachRequest(container_id=MISSING, stdout=True)))
    no("CreateContainer", "an unknown pod sandbox ID", lambda: rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=MISSING, config=ctr, sandbox_config=pod)))
    no("UpdateRuntimeConfig", "a pod CIDR that does not parse", lambda: rt.UpdateRuntimeConfig(
        cri.UpdateRuntimeConfigRequest(runtime_config=cri.RuntimeConfig(
            network_config=cri.NetworkConfig(pod_cidr="not-a-cidr")))))
    missing_image = cri.ImageSpec(image=env.busybox_image.rsplit(":", 1)[0] + ":no-such-tag")
    no("PullImage", "a tag the registry does not have", lambda: im.PullImage(
        cri.PullImageRequest(image=missing_image), timeout=60))
    no("ImageStatus", "a reference that does not parse", lambda: im.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image="Not A Reference"))))
    no("RemoveImage", "an image that is not there", lambda: im.RemoveImage(
        cri.RemoveImageRequest(image=missing_image)))
    for rpc in ("CheckpointContainer", "CheckpointPod", "RestorePod"):
        req = getattr(cri, f"{rpc}Request")()
        no(rpc, "any request", lambda rpc=rpc, req=req: getattr(rt, rpc)(req))


def all_rpcs() -> list[tuple[str, str, bool]]:
    """(service, method, server streaming) of every method the CRI protos declare, sorted by name."""
    out = [(svc.name, m.name, m.server_streaming) for svc in cri.DESCRIPTOR.services_by_name.values()
           for m in svc.methods]
    return sorted(out, key=lambda x: x[1])


def module_of(rpc: str) -> str | None:
    fn = handlers.load_all().get(rpc)
    return None if fn is None else fn.__module__.replace(".", "/") + ".py"


def steps_table(steps: list[list[Any]]) -> list[str]:
    out = ["| # | containerd call | code | key arguments |", "|---|---|---|---|"]
    for i, s in enumerate(steps, 1):
        args = s[4] if len(s) > 4 else {}
        shown = ", ".join(f"`{k}={mask(str(v))}`" for k, v in args.items())
        out.append(f"| {i} | {s[0]}.{s[1]} | {s[2]} | {shown} |")
    return out


def optional_calls(text: dict[str, Any]) -> set[str]:
    return {str(c) for c in text.get("optional", [])}


def render_page(service: str, rpc: str, streaming: bool, seen: Seen, text: dict[str, Any]) -> str:
    module = module_of(rpc)
    status = "implemented" if module else "not implemented (answers UNIMPLEMENTED)"
    where = f"[`{module}`](../../{module})" if module else "no module"
    kind = "server stream" if streaming else "unary"
    out = [f"# {rpc}", "",
           f"`runtime.v1.{service}/{rpc}` ({kind}) · {status} · implemented in {where}", "",
           "<!-- Generated by scripts/gen_rpc_docs.py from a recorded run; edit docs/rpc/rpcs.toml and rerun. -->",
           "", "## What it means for a kubelet", "", text.get("meaning", "(not written yet)"), "",
           "## What criproxy stores, and where", "", text.get("stores", "(not written yet)"), "",
           "## The containerd calls it makes, in order", ""]
    if module and seen.ok_done:
        out.append(f"Recorded: {seen.scenario}.")
        out.append("")
        out.append(BEGIN)
        if seen.ok_steps:
            out += steps_table(seen.ok_steps)
        else:
            out.append("None: answered from criproxy's own records and caches.")
        out.append(END)
        if seen.ok_code != "OK":
            out += ["", f"The call ended with `{seen.ok_code}` (a stream ends when its client goes away)."]
        if text.get("optional"):
            out += ["", "Made only sometimes: " + ", ".join(f"`{c}`" for c in text["optional"])
                    + f" ({text.get('optional_why', '')})."]
    elif module:
        out += ["Not driven by the recording script yet.", "", BEGIN, "(not recorded)", END]
    else:
        out += [BEGIN, "None: criproxy answers UNIMPLEMENTED without calling containerd.", END]
    out += ["", "## Errors", "", text.get("errors", "(not written yet)"), ""]
    if seen.probe:
        msg = f": {seen.probe_message}" if seen.probe_message else ""
        out.append(f"Recorded: called with {seen.probe}, it answered `{seen.probe_code}`{msg}")
        if seen.probe_steps:
            out += ["", "after these containerd calls:", "", *steps_table(seen.probe_steps)]
        out.append("")
    return "\n".join(out)


def render_index(rows: list[tuple[str, str, bool]], seen: dict[str, Seen]) -> str:
    out = ["# CRI RPCs and what they become in containerd", "",
           "One page per RPC of the CRI v1 protos, generated by `scripts/gen_rpc_docs.py` from a run",
           "against the real containerd of the test environment (tests/harness/): what the RPC means for",
           "a kubelet, the containerd calls criproxy makes for it in order, what it stores where, and the",
           "errors it returns. CI reruns the script with `--check` (tests/integration/test_rpc_docs.py) and",
           "fails when the calls differ from these pages, on every containerd release of the test matrix.",
           "Pulls are recorded with `--pull-method own` (criproxy's own registry client, the only one on",
           "containerd 1.x); on 2.x the default `auto` hands a pull to containerd's Transfer service",
           "instead, and PullImage is then one `Transfer.Transfer` call (docs/images.md). The live view of",
           "the same is `criproxy trace` and `criproxy ui` (docs/guides/debug-a-stuck-pod.md).", "",
           "| RPC | service | status | containerd calls when recorded |", "|---|---|---|---|"]
    for service, rpc, _ in rows:
        s = seen.get(rpc, Seen())
        module = module_of(rpc)
        status = "implemented" if module else "UNIMPLEMENTED"
        calls = "—" if not module else (str(len(s.ok_steps)) if s.ok_steps else "none (criproxy answers)") \
            if s.ok_done else "not recorded"
        out.append(f"| [{rpc}]({rpc}.md) | {service} | {status} | {calls} |")
    out.append("")
    return "\n".join(out)


def structure(page: str) -> collections.Counter[str]:
    """The containerd calls (and codes) a page lists between its markers, as a multiset."""
    if BEGIN not in page:
        return collections.Counter()
    block = page.split(BEGIN, 1)[1].split(END, 1)[0]
    calls = [f"{cells[2].strip()} {cells[3].strip()}" for line in block.splitlines()
             if line.startswith("| ") and (cells := line.split("|"))[1].strip().isdigit()]
    return collections.Counter(calls)


def implemented_in(page: str) -> str:
    """The page's status line (service, status, implementing module)."""
    return next((line for line in page.splitlines() if "implemented in" in line or "not implemented" in line), "")


def record() -> dict[str, str]:
    env = Environment.create()
    try:
        # criproxy's own puller on every containerd release, so the pages hold on 1.x and 2.x alike
        # (the default on 2.x hands the pull to containerd's Transfer service: docs/images.md).
        proc = env.new_criproxy("rpcdocs", extra_args=["--log-level", "info", "--pull-method", "own"])
        rec = Recorder(proc.state / "debug.sock")
        with proc.client() as client:
            drive(env, client.runtime, client.image, env.scratch_dir("logs"), rec)
    finally:
        env.close()
    text = tomllib.loads(DATA.read_text())
    rows = all_rpcs()
    pages = {f"{rpc}.md": render_page(service, rpc, streaming, rec.seen.get(rpc, Seen()), text.get(rpc, {}))
             for service, rpc, streaming in rows}
    pages["README.md"] = render_index(rows, rec.seen)
    return pages


def check(pages: dict[str, str]) -> list[str]:
    problems = []
    text = tomllib.loads(DATA.read_text())
    for name, page in sorted(pages.items()):
        path = OUT / name
        if not path.exists():
            problems.append(f"{name}: missing (rerun scripts/gen_rpc_docs.py)")
            continue
        skip = optional_calls(text.get(name.removesuffix(".md"), {}))
        old, new = structure(path.read_text()), structure(page)
        for call in skip:
            old.pop(call, None)
            new.pop(call, None)
        if old != new:
            gone, added = sorted((old - new).elements()), sorted((new - old).elements())
            problems.append(f"{name}: containerd calls differ from the checked-in page: no longer made "
                            f"{gone}, newly made {added}")
        if implemented_in(path.read_text()) != implemented_in(page):
            problems.append(f"{name}: the implementing module moved: {implemented_in(page)}")
    for path in sorted(OUT.glob("*.md")):
        if path.name not in pages:
            problems.append(f"{path.name}: no such CRI RPC any more")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the checked-in pages, write nothing")
    args = ap.parse_args()
    pages = record()
    if args.check:
        problems = check(pages)
        for p in problems:
            print(p)
        print(f"docs/rpc: {len(pages)} pages, {len(problems)} differing")
        return 1 if problems else 0
    for stale in OUT.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
    for name, page in pages.items():
        (OUT / name).write_text(page)
    print(f"wrote {len(pages)} pages to docs/rpc/")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
