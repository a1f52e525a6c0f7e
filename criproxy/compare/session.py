"""The two sides, the recorder of timed calls, and the fetch of the specs each side stored.

Calls are synchronous (grpc's sync API): a scenario is a plain script, and timing one blocking call
is the latency a client sees. Every call has a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from criproxy import protos as p
from criproxy.compare.mask import answer_document
from criproxy.parity import Difference, Normaliser, diff
from criproxy.parity.spec import decode_spec, record_document

MAX_MESSAGE = 64 * 1024 * 1024
MAX_SAMPLES = 200_000      # per RPC and side: a bound on memory for long runs
MAX_ANSWER_PAIRS = 20      # answers compared per scenario and RPC
MAX_DIFF_PATHS = 200       # distinct difference paths kept per scenario and RPC
SIDES = ("a", "b")


def target(endpoint: str) -> str:
    """A grpc target for an endpoint given as a socket path, ``unix://…`` or ``host:port``."""
    if endpoint.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return endpoint
    if endpoint.startswith("/") or endpoint.startswith("."):
        return f"unix://{endpoint}"
    return endpoint


class Side:
    """One CRI endpoint: its stubs and the containerd namespace its objects live in."""

    def __init__(self, key: str, endpoint: str, namespace: str, timeout: float) -> None:
        self.key, self.endpoint, self.namespace, self.timeout = key, endpoint, namespace, timeout
        self.channel = grpc.insecure_channel(target(endpoint), options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.runtime = p.cri_grpc.RuntimeServiceStub(self.channel)
        self.image = p.cri_grpc.ImageServiceStub(self.channel)
        self.pods: list[str] = []          # made by this run, removed at the end
        self.containers: list[str] = []

    def stub_for(self, rpc: str) -> Any:
        return self.image if rpc in _IMAGE_RPCS else self.runtime

    def close(self) -> None:
        self.channel.close()


_IMAGE_RPCS = {"PullImage", "ListImages", "ImageStatus", "RemoveImage", "ImageFsInfo"}


@dataclass
class RpcRecord:
    """What one scenario saw of one RPC on both sides."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {"a": [], "b": []})
    codes: dict[str, dict[str, int]] = field(default_factory=lambda: {"a": {}, "b": {}})
    answers: dict[str, list[Any]] = field(default_factory=lambda: {"a": [], "b": []})
    diffs: dict[str, dict[str, Any]] = field(default_factory=dict)


class CallFailed(Exception):
    """A call that a scenario needed (its answer feeds the next step) failed."""


class Recorder:
    """Times calls and keeps, per scenario and RPC, latencies, status codes and masked answers."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.scenario = ""
        self.records: dict[str, dict[str, RpcRecord]] = {}
        self._lock = threading.Lock()

    def record(self, scenario: str, rpc: str) -> RpcRecord:
        with self._lock:
            return self.records.setdefault(scenario, {}).setdefault(rpc, RpcRecord())

    def call(self, side: Side, rpc: str, request: Any, timeout: float | None = None,
             must: bool = True, compare: bool = True, scenario: str | None = None) -> Any:
        """Call ``rpc`` on ``side``, recording its latency, code and answer; None (or CallFailed
        when ``must``) on an error status."""
        method: Callable[..., Any] = getattr(side.stub_for(rpc), rpc)
        rec = self.record(scenario or self.scenario, rpc)
        t0 = time.perf_counter()
        try:
            resp = method(request, timeout=timeout or side.timeout)
            code = "OK"
        except grpc.RpcError as e:
            resp, code = None, e.code().name if hasattr(e, "code") else "UNKNOWN"
            detail = e.details() if hasattr(e, "details") else str(e)
        ms = (time.perf_counter() - t0) * 1000
        with self._lock:
            if code == "OK" and len(rec.ms[side.key]) < MAX_SAMPLES:  # a refusal's time is no latency
                rec.ms[side.key].append(ms)
            rec.codes[side.key][code] = rec.codes[side.key].get(code, 0) + 1
            if compare and resp is not None and len(rec.answers[side.key]) < MAX_ANSWER_PAIRS:
                rec.answers[side.key].append(answer_document(resp, self.run_id))
        if resp is None and must:
            raise CallFailed(f"{rpc} on {side.key} ({side.endpoint}): {code}: {detail}")
        return resp

    def answer_diffs(self) -> None:
        """Compare the answers pairwise (the i-th of A with the i-th of B) and keep each distinct
        difference path with one example and how many pairs showed it."""
        for rpcs in self.records.values():
            for rec in rpcs.values():
                for left, right in zip(rec.answers["a"], rec.answers["b"], strict=False):
                    for d in diff(left, right):
                        seen = rec.diffs.get(d.path)
                        if seen is not None:
                            seen["count"] += 1
                        elif len(rec.diffs) < MAX_DIFF_PATHS:
                            rec.diffs[d.path] = {"a": _plain(d.left), "b": _plain(d.right), "count": 1}


def _plain(v: Any) -> Any:
    return "<absent>" if repr(v) == "<absent>" else v


def order(i: int, a: Side, b: Side) -> tuple[Side, Side]:
    """The two sides in the order of round ``i``: A first on even rounds, B first on odd ones."""
    return (a, b) if i % 2 == 0 else (b, a)


# -- specs stored in containerd --------------------------------------------------------------------

class SpecFetcher:
    """Reads the container record and OCI spec each side stored (Containers.Get in its namespace)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(target(address), options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.stub = p.containers_grpc.ContainersStub(self.channel)
        self.timeout = timeout

    def fetch(self, namespace: str, container_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        resp = self.stub.Get(p.containers_pb.GetContainerRequest(id=container_id), timeout=self.timeout,
                             metadata=(("containerd-namespace", namespace),))
        return decode_spec(resp.container.spec), record_document(resp.container)

    def close(self) -> None:
        self.channel.close()


@dataclass
class SpecPair:
    """Both sides' containers made by one CreateContainer request, and their pods."""

    label: str
    ids: dict[str, tuple[str, str, str, str]]   # side -> (pod id, container id, pod name, pod uid)


def spec_differences(fetcher: SpecFetcher, a: Side, b: Side, pair: SpecPair,
                     dirs: dict[str, list[str]]) -> list[Difference]:
    """Differences between the normalised specs (``spec.…``) and records (``record.…``) of the pair."""
    docs = []
    for side in (a, b):
        pod, ctr, name, uid = pair.ids[side.key]
        spec, record = fetcher.fetch(side.namespace, ctr)
        norm = Normaliser({ctr: "<container>", pod: "<pod>", name: "<pod-name>", uid: "<pod-uid>"},
                          dirs.get(side.key, ()), side.namespace)
        docs.append((norm(spec), norm(record)))
    return diff(docs[0][0], docs[1][0], "spec") + diff(docs[0][1], docs[1][1], "record")
