"""Fuzzing every CRI RPC (issue 9): 10,000 mutated requests never get UNKNOWN or INTERNAL, never crash
criproxy, and leave nothing in containerd that a successful request did not create.

Requests are generated from the protobuf descriptors with a seeded RNG (the same seed gives the same
requests, apart from IDs of objects earlier requests created): random fields, huge (1 MiB) strings,
unicode, NUL, empty and real IDs, extreme integers, nested messages, unknown enum values. They go
through the CRI socket of a criproxy instance of its own (namespace ``fuzz``), in concurrent batches.

Some fields are confined so that a request that happens to be valid stays harmless on this machine:
image pulls only ever name the test registry (or are malformed), host paths of mounts and devices
are under a scratch directory or refused forms, a pod sandbox is mostly invalid (and otherwise has
no host namespaces, ports or cgroup parent), and only the test's own container is ever started.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from criproxy.protos import cri
from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.integration.containers.conftest import container_config, pod_config, wait_for

SEED = 20260909
TOTAL = 10_000
BATCH = 256
WORKERS = 8
HUGE = 1 << 20
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
NAMESPACE = "fuzz"
# RPCs whose IDs may name the test's base pod/container: the others (stop, remove) only get IDs of
# objects fuzzed requests created, so the base pod keeps serving the deeper code paths.
DESTRUCTIVE = {"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}
_I32, _U32 = (-(1 << 31), (1 << 31) - 1), (0, (1 << 32) - 1)
_I64, _U64 = (-(1 << 63), (1 << 63) - 1), (0, (1 << 64) - 1)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: _I32, FieldDescriptor.TYPE_SINT32: _I32, FieldDescriptor.TYPE_SFIXED32: _I32,
    FieldDescriptor.TYPE_UINT32: _U32, FieldDescriptor.TYPE_FIXED32: _U32,
    FieldDescriptor.TYPE_INT64: _I64, FieldDescriptor.TYPE_SINT64: _I64, FieldDescriptor.TYPE_SFIXED64: _I64,
    FieldDescriptor.TYPE_UINT64: _U64, FieldDescriptor.TYPE_FIXED64: _U64,
}


@dataclass
class Known:
    """IDs the fuzzer may use: the base pod/container and what valid fuzzed requests created."""

    pod: str
    container: str
    image_id: str
    busybox: str
    registry: str
    scratch: Path
    pods: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fuzzer:
    def __init__(self, rng: random.Random, known: Known) -> None:
        self.rng, self.k = rng, known

    # ---- values ----------------------------------------------------------------------------------
    def word(self, n: int = 8) -> str:
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-._") for _ in range(n))

    def unicode(self, n: int = 12) -> str:
        out = []
        for _ in range(n):
            cp = self.rng.choice([self.rng.randint(0x20, 0x7e), self.rng.randint(0xa0, 0x2fff),
                                  self.rng.randint(0x4e00, 0x9fff), self.rng.randint(0x1f300, 0x1faff)])
            out.append(chr(cp))
        return "".join(out)

    def huge(self) -> str:
        return self.rng.choice(["A", "é", "/", "\x00", "中"]) * (HUGE // 3)

    def text(self, name: str = "") -> str:
        r = self.rng.random()
        if name.endswith("id") and r < 0.45:
            return self.some_id(name)
        if r < 0.002:
            return self.huge()
        return self.rng.choice([
            "", "", "a", self.word(), self.word(40), self.unicode(), "a\x00b", "\x00", "../../../etc/passwd",
            "/etc/passwd", "x\n", " ", "\t\r\n", "%s%n", "sha256:" + self.hex(), self.hex(), "-1", "☃" * 300,
            self.k.busybox, self.k.busybox + "\n", "UPPER/Case", f"{self.k.registry}/{self.word()}",
        ])

    def hex(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(64))

    def some_id(self, name: str) -> str:
        with self.k.lock:
            created = self.k.containers + self.k.pods
        choices = [self.k.pod, self.k.container, self.k.pod[:12], self.k.container[:5], self.k.image_id,
                   self.hex(), "", self.k.container.upper(), self.k.pod + "\n"]
        if created:
            choices += [self.rng.choice(created)] * 3
        return self.rng.choice(choices)

    def integer(self, kind: int) -> int:
        lo, hi = INT_RANGES[kind]
        return self.rng.choice([0, 0, 1, -1, 2, lo, hi, self.rng.randint(lo, hi), 1 << 20, 300, 86400])

    def scalar(self, f: FieldDescriptor) -> Any:
        t = f.type
        if t == FieldDescriptor.TYPE_STRING:
            return self.text(f.name)
        if t == FieldDescriptor.TYPE_BYTES:
            return self.rng.choice([b"", b"\x00\xff", self.text().encode(), bytes(self.rng.randrange(256)
                                                                                   for _ in range(16))])
        if t == FieldDescriptor.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t == FieldDescriptor.TYPE_ENUM:
            values = [v.number for v in f.enum_type.values]
            return self.rng.choice([*values, *values, 999, -1])
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return self.rng.choice([0.0, -1.0, 1e30, float("inf"), float("nan")])
        return self.integer(t)

    # ---- messages --------------------------------------------------------------------------------
    def fill(self, msg: Message, depth: int = 0) -> Message:
        desc: Descriptor = msg.DESCRIPTOR
        for f in desc.fields:
            if self.rng.random() < 0.35:
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE and depth >= 5:
                continue
            self.set_field(msg, f, depth)
        return msg

    def set_field(self, msg: Message, f: FieldDescriptor, depth: int) -> None:
        target = getattr(msg, f.name)
        repeated = f.is_repeated
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            key_f, val_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            for _ in range(self.rng.randint(0, 4)):
                key = self.scalar(key_f)
                if val_f.type == FieldDescriptor.TYPE_MESSAGE:
                    self.fill(target[key], depth + 1)
                else:
                    target[key] = self.scalar(val_f)
            return
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                for _ in range(self.rng.randint(0, 3)):
                    self.fill(target.add(), depth + 1)
            else:
                self.fill(target, depth + 1)
                if not target.ListFields():
                    target.SetInParent()
            return
        if repeated:
            target.extend(self.scalar(f) for _ in range(self.rng.randint(0, 4)))
            return
        try:
            setattr(msg, f.name, self.scalar(f))
        except ValueError:          # e.g. an unknown value for a closed enum: leave the field unset
            pass

    # ---- confinement (see the module docstring) -----------------------------------------------------
    def host_path(self) -> str:
        return self.rng.choice([str(self.k.scratch / self.word()), str(self.k.scratch), "relative/path",
                                "", "a\x00b", str(self.k.scratch / "x\x00y"), self.unicode()])

    def confine(self, method: str, req: Any) -> None:
        rng = self.rng
        if method == "PullImage":
            req.image.image = rng.choice([f"{self.k.registry}/{self.text()}", f"{self.k.registry}/busybox",
                                          f"{self.k.registry}/{self.word()}:{self.word()}", "", " x", "UP PER",
                                          f"{self.k.registry}/pause:3.9", self.huge(), "x\n"])
            if rng.random() < 0.5:
                req.ClearField("auth")
        elif method == "RunPodSandbox":
            if rng.random() < 0.9:
                req.config.metadata.uid = ""          # invalid: refused before anything is made
            else:
                self.safe_pod(req)
        elif method == "CreateContainer":
            if rng.random() < 0.7:
                req.pod_sandbox_id = self.k.pod
            cfg = req.config
            for m in cfg.mounts:
                m.host_path = self.host_path()
            for d in cfg.devices:
                d.host_path = rng.choice(["/dev/null", "/dev/zero", "/nonexistent-dev", "rel", ""])
            sc = cfg.linux.security_context
            sc.seccomp_profile_path = rng.choice(["", "runtime/default", "unconfined", "localhost/rel",
                                                  f"localhost/{self.k.scratch}/none.json"])
            if sc.HasField("seccomp"):
                sc.seccomp.localhost_ref = rng.choice(["", "rel", f"{self.k.scratch}/none.json"])
            if rng.random() < 0.5:
                cfg.image.image = self.k.busybox
        elif method == "StartContainer":
            req.container_id = rng.choice([self.k.container, self.hex(), "", self.k.container[:6], self.text()])
        elif method in DESTRUCTIVE:
            attr = "container_id" if "Container" in method else "pod_sandbox_id"
            value = getattr(req, attr)
            if value and (self.k.pod.startswith(value) or self.k.container.startswith(value)):
                setattr(req, attr, self.hex())
        elif method == "RemoveImage":
            if req.image.image in (self.k.busybox, self.k.image_id) or self.k.image_id.startswith(req.image.image):
                req.image.image = self.hex()
        elif method == "ExecSync":
            req.timeout = rng.choice([0, 1, 2, -1])

    def safe_pod(self, req: cri.RunPodSandboxRequest) -> None:
        cfg = req.config
        for f in ("name", "namespace", "uid"):
            if not getattr(cfg.metadata, f):
                setattr(cfg.metadata, f, self.word())
        cfg.ClearField("port_mappings")
        cfg.ClearField("linux")
        cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
        cfg.log_directory = self.rng.choice([str(self.k.scratch / self.word()), "", "relative/logs"])
        req.runtime_handler = self.rng.choice(["", "", self.word()])

    def request(self, method: MethodDescriptor) -> Message:
        req = self.fill(getattr(cri, method.input_type.name)())
        self.confine(method.name, req)
        return req


@dataclass
class Outcome:
    codes: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)


def _call(channel: grpc.Channel, method: MethodDescriptor, req: Message, known: Known, out: Outcome) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    resp_cls = getattr(cri, method.output_type.name)
    ser: Callable[[Message], bytes] = lambda m: m.SerializeToString()  # noqa: E731
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=ser, response_deserializer=resp_cls.FromString)
            it = stream(req, timeout=1.0)
            for n, _ in enumerate(it):
                if n >= 3:
                    it.cancel()
                    break
            code = "OK"
        else:
            unary = channel.unary_unary(path, request_serializer=ser, response_deserializer=resp_cls.FromString)
            resp = unary(req, timeout=60.0)
            code = "OK"
            _remember(method.name, resp, req, known)
    except grpc.RpcError as e:
        status = e.code()
        code = status.name
        streaming_end = method.server_streaming and status in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                                grpc.StatusCode.CANCELLED)
        if status in BAD_CODES or (status == grpc.StatusCode.DEADLINE_EXCEEDED and not streaming_end):
            out.bad.append(f"{method.name}: {code}: {(e.details() or '')[:300]} <- {str(req)[:300]!r}")
    out.codes[f"{method.name}:{code}"] += 1


def _remember(name: str, resp: Any, req: Any, known: Known) -> None:
    with known.lock:
        if name == "RunPodSandbox":
            known.pods.append(resp.pod_sandbox_id)
        elif name == "CreateContainer":
            known.containers.append(resp.container_id)
        elif name == "PullImage":
            known.pulled.append(resp.image_ref)


@pytest.fixture
def fuzz_target(testenv: Environment, criproxy_factory: CriproxyFactory) -> Iterator[tuple[CriClient, Path]]:
    proc = criproxy_factory(namespace=NAMESPACE)
    with proc.client() as client:
        yield client, proc.socket


def _ctr_ids(ctr: Callable[..., str], *args: str) -> set[str]:
    return {line.split()[0] for line in ctr(*args, namespace=NAMESPACE).splitlines() if line.strip()}


def _base(client: CriClient, testenv: Environment, scratch: Path) -> Known:
    busybox = testenv.busybox_image
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=busybox)), timeout=120)
    image_id = client.image.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=busybox))).image.id
    cfg = pod_config(scratch, "fuzzbase")
    pod = client.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
    ccfg = container_config(busybox, "base", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"])
    cid = client.runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod, config=ccfg,
                                                                    sandbox_config=cfg)).container_id
    client.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    return Known(pod=pod, container=cid, image_id=image_id, busybox=busybox, registry=testenv.registry_host,
                 scratch=scratch)


def _clean(client: CriClient) -> None:
    rt = client.runtime
    for c in rt.ListContainers(cri.ListContainersRequest()).containers:
        rt.StopContainer(cri.StopContainerRequest(container_id=c.id, timeout=0))
        rt.RemoveContainer(cri.RemoveContainerRequest(container_id=c.id))
    for p in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items:
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=p.id), timeout=120)
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=120)
    for img in client.image.ListImages(cri.ListImagesRequest()).images:
        client.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=img.id)))


def test_fuzz_every_rpc(fuzz_target: tuple[CriClient, Path], testenv: Environment,
                        ctr: Callable[..., str]) -> None:
    client, socket = fuzz_target
    scratch = testenv.scratch_dir("fuzz")
    known = _base(client, testenv, scratch)
    methods = [m for svc in cri.DESCRIPTOR.services_by_name.values() for m in svc.methods]
    rng = random.Random(SEED)
    fuzzer = Fuzzer(rng, known)
    plan = [methods[i % len(methods)] for i in range(TOTAL)]
    rng.shuffle(plan)
    out = Outcome()
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    started = time.monotonic()
    with grpc.insecure_channel(f"unix://{socket}", options=opts) as channel, \
            ThreadPoolExecutor(WORKERS) as pool:
        for at in range(0, TOTAL, BATCH):
            batch = [(m, fuzzer.request(m)) for m in plan[at:at + BATCH]]
            list(pool.map(lambda mr: _call(channel, mr[0], mr[1], known, out), batch))
            client.version(timeout=10)               # still answering after every batch
    took = time.monotonic() - started
    print(f"fuzz: {TOTAL} requests over {len(methods)} RPCs in {took:.1f}s; "
          f"{sum(n for k, n in out.codes.items() if k.endswith(':OK'))} OK")
    print("  " + ", ".join(f"{k} {n}" for k, n in sorted(out.codes.items())))
    assert sum(out.codes.values()) == TOTAL
    assert {k.split(":")[0] for k in out.codes} == {m.name for m in methods}
    assert not out.bad, "\n".join(out.bad[:40])

    # containerd holds only what successful requests created (failed ones left nothing behind) ...
    made = {known.pod, known.container, *known.pods, *known.containers}
    assert _ctr_ids(ctr, "containers", "ls", "-q") <= made
    # ... and once those are removed, nothing at all (criproxy's own creation lease aside).
    _clean(client)
    assert _ctr_ids(ctr, "containers", "ls", "-q") == set()
    assert _ctr_ids(ctr, "images", "ls", "-q") == set()
    wait_for(lambda: not _ctr_ids(ctr, "snapshots", "ls") - {"KEY"}, timeout=60, what="snapshots collected")
    leases = _ctr_ids(ctr, "leases", "ls") - {"ID"}
    assert all(lease.startswith("criproxy-create-") for lease in leases), leases
