"""Pulling through containerd 2.x's Transfer service: the daemon fetches and unpacks (docs/images.md).

On containerd >= 2.0 the daemon can pull an image itself: ``Transfer.Transfer`` with an
``OCIRegistry`` source (the reference, the hosts directory, a credential stream) and an
``ImageStore`` destination (the record name, our labels, this host's platform, unpack onto the
configured snapshotter). No layer byte then crosses criproxy, which is what makes it faster than the
own client (images/pull.py) on 2.x. After the transfer criproxy writes the same three records the
own client writes (records.py), so everything downstream is the same whichever path pulled.

Side channels ride containerd's ``Streaming`` service: a client opens ``Stream``, sends
``StreamInit{id}``, waits for the daemon's acknowledgement and names ``id`` in the request.
- progress: the daemon sends ``Progress`` events (per blob, bytes so far); they feed the same stall
  watchdog as the own client's bytes (``pull_progress_timeout``).
- credentials: only when the CRI call carried some; the daemon sends ``AuthRequest{host}`` when a
  registry answers 401 and we answer ``AuthResponse`` with the credentials meant for that host
  (none for a mirror when the AuthConfig named another server, as the own client does).

The transfer runs under our own pull lease (the ``containerd-lease`` header), so a cancelled or
failed pull leaves nothing GC will not collect, and a criproxy killed mid-pull leaves a lease that the
next start deletes (pull.drop_stale_pull_leases).

containerd's resolver errors reach us mostly as UNKNOWN with Go's error text; ``classify`` turns
them into the classes the own client gives (NotFound, Unauthenticated, Unavailable,
DeadlineExceeded), so a kubelet sees the same error whichever path pulled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import time
from typing import Any

from google.protobuf import any_pb2

from criproxy import errors, trace
from criproxy.app import App
from criproxy.images import content, records, reference
from criproxy.images.auth import Credentials
from criproxy.images.descriptor import Descriptor
from criproxy.images.local import LocalImage, describe
from criproxy.images.manifest import host_platform
from criproxy.labels import PULL_LEASE
from criproxy.protos import (
    images_pb,
    introspection_pb,
    platform_pb,
    streaming_pb,
    transfer_imagestore,
    transfer_pb,
    transfer_progress,
    transfer_registry,
)

log = logging.getLogger("criproxy.images.transfer")

STREAM_DEADLINE = 3600.0       # a side stream lives as long as the transfer it serves (same bound)
STREAM_ACK_TIMEOUT = 10.0      # the daemon acknowledges a StreamInit at once
MAX_PROGRESS_JOBS = 4096       # blobs tracked per pull (an image has a few dozen)
# What the daemon must serve for a Transfer pull: the Transfer and Streaming gRPC services and the
# local transferrer behind them.
NEEDED_PLUGINS = (("io.containerd.grpc.v1", "transfer"), ("io.containerd.grpc.v1", "streaming"),
                  ("io.containerd.transfer.v1", "local"))


def _pack(msg: Any) -> any_pb2.Any:
    """Any with the bare full name as type URL, which is what containerd's typeurl registry keys on."""
    return any_pb2.Any(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


async def available(app: App) -> bool:
    """Whether this containerd can pull through Transfer: version 2 or later (1.7's Transfer service
    was experimental and is not used) with all of NEEDED_PLUGINS loaded without an init error.
    Asked once per process; ``forget`` resets it."""
    cached = app.images.transfer_available
    if cached is not None:
        return cached
    try:
        version = await app.ctrd.server_version()
        resp = await app.ctrd.introspection.Plugins(introspection_pb.PluginsRequest(filters=[
            f"type=={t},id=={i}" for t, i in NEEDED_PLUGINS]))
    except errors.CriError as e:
        log.info("cannot ask containerd for its version and plugins (%s): pulling with criproxy's own client", e)
        return False
    loaded = {(pl.type, pl.id) for pl in resp.plugins if not pl.HasField("init_err")}
    ok = major_version(version) >= 2 and all(need in loaded for need in NEEDED_PLUGINS)
    app.images.transfer_available = ok
    log.info("containerd %s: %s", version, "pulls through its Transfer service" if ok
             else "no Transfer service to use, pulls with criproxy's own client")
    return ok


def major_version(version: str) -> int:
    """``2.1.9+unknown`` / ``v1.6.20~ds1`` → 2 / 1; 0 when unreadable."""
    head = version.strip().lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def forget(app: App) -> None:
    """Ask again at the next pull (containerd answered UNIMPLEMENTED: it was replaced by an older one)."""
    app.images.transfer_available = None


def supports(creds: Credentials) -> bool:
    """Whether Transfer can carry these credentials: a bare registry token cannot (containerd's
    credential stream sends it nowhere as a bearer header), so such pulls use the own client."""
    return not creds.registry_token


def _stream_id(kind: str) -> str:
    return f"criproxy-{kind}-{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(6)).decode()}"


async def _open_stream(app: App, kind: str) -> tuple[str, Any]:
    """Open a Streaming.Stream, register it under a fresh ID and wait for the daemon's ack."""
    sid = _stream_id(kind)
    call: Any = app.ctrd.streaming.Stream.stream(timeout=STREAM_DEADLINE)
    try:
        await call.write(_pack(streaming_pb.StreamInit(id=sid)))
        await asyncio.wait_for(call.read(), STREAM_ACK_TIMEOUT)
    except BaseException as e:
        call.cancel()
        if isinstance(e, TimeoutError):
            raise errors.Unavailable(f"containerd did not acknowledge the {kind} stream") from None
        raise
    return sid, call


class _Jobs:
    """Per-blob progress from the daemon, folded into the pull's ``content.Progress``."""

    def __init__(self, progress: content.Progress):
        self.progress = progress
        self.done: dict[str, int] = {}
        self.open: set[str] = set()

    def event(self, ev: Any) -> None:
        name = str(ev.name)
        if not name or (name not in self.done and len(self.done) >= MAX_PROGRESS_JOBS):
            return
        if name not in self.done:
            self.done[name] = 0
            self.progress.total += max(int(ev.total), 0)
        finished = ev.event in ("complete", "already exists")
        delta = int(ev.progress) - self.done[name]
        if delta > 0 and ev.event != "already exists":
            self.progress.got(delta)
        self.done[name] = max(self.done[name], int(ev.progress))
        if finished:
            self.open.discard(name)
        else:
            self.open.add(name)
        self.progress.active = len(self.open)


async def _read_progress(call: Any, jobs: _Jobs) -> None:
    """Consume the progress stream until the daemon closes it (at the transfer's end)."""
    with contextlib.suppress(Exception):
        while True:
            msg = await call.read()
            if msg is None or not hasattr(msg, "type_url"):     # EOF
                return
            if msg.type_url.rsplit("/", 1)[-1] != transfer_progress.Progress.DESCRIPTOR.full_name:
                continue
            ev = transfer_progress.Progress()
            ev.ParseFromString(msg.value)
            jobs.event(ev)


async def _serve_credentials(call: Any, creds: Credentials) -> None:
    """Answer each AuthRequest with the credentials for its host (none for another host)."""
    with contextlib.suppress(Exception):
        while True:
            msg = await call.read()
            if msg is None or not hasattr(msg, "type_url"):
                return
            req = transfer_registry.AuthRequest()
            if msg.type_url.rsplit("/", 1)[-1] == req.DESCRIPTOR.full_name:
                req.ParseFromString(msg.value)
            mine = creds.for_host(req.host)
            resp = transfer_registry.AuthResponse()
            if mine.username or mine.password:
                resp.authType = transfer_registry.CREDENTIALS
                resp.username, resp.secret = mine.username, mine.password
            elif mine.identity_token:
                resp.authType = transfer_registry.REFRESH
                resp.secret = mine.identity_token
            trace.note(f"transfer asked credentials for {req.host}: "
                       f"{transfer_registry.AuthType.Name(resp.authType).lower()}")
            await call.write(_pack(resp))


def request_for(app: App, ref: reference.Reference, labels: dict[str, str], auth_stream: str,
                progress_stream: str) -> Any:
    """The TransferRequest for a pull of ``ref`` into this namespace's image store, unpacked."""
    plat = host_platform()
    platform = platform_pb.Platform(os=plat.os, architecture=plat.architecture, variant=plat.variant)
    config_path = app.config.registry_config_path
    resolver = transfer_registry.RegistryResolver(auth_stream=auth_stream,
                                                  host_dir=str(config_path) if config_path.is_dir() else "")
    source = transfer_registry.OCIRegistry(reference=str(ref), resolver=resolver)
    dest = transfer_imagestore.ImageStore(
        name=str(ref), labels=labels, platforms=[platform],
        unpacks=[transfer_imagestore.UnpackConfiguration(platform=platform, snapshotter=app.config.snapshotter)])
    return transfer_pb.TransferRequest(source=_pack(source), destination=_pack(dest),
                                       options=transfer_pb.TransferOptions(progress_stream=progress_stream))


_NOT_FOUND = ("not found", "manifest unknown", "name unknown", "no match for platform")
_UNAUTH = ("401 unauthorized", "unauthorized", "authorization failed", "pull access denied")
_DENIED = ("403 forbidden", "denied")
_MALFORMED = ("unmarshal", "invalid character", "unexpected media type", "unexpected end of json",
              "digest mismatch", "failed commit on ref")
_UNAVAILABLE = ("connection refused", "dial tcp", "no such host", "i/o timeout", "tls:", "x509:",
                "connection reset", "eof", "500 internal", "502 ", "503 ", "504 ", "server gave http response")


def classify(err: errors.CriError, ref: reference.Reference) -> errors.CriError:
    """The own client's error class for a failed transfer (containerd says UNKNOWN for most)."""
    if isinstance(err, (errors.NotFound, errors.Unauthenticated, errors.PermissionDenied, errors.Unavailable,
                        errors.DeadlineExceeded, errors.Cancelled, errors.InvalidArgument,
                        errors.ResourceExhausted)):
        return err
    text = str(err).lower()
    why: dict[type[errors.CriError], str] = {
        errors.PermissionDenied: "the registry denied access", errors.NotFound: "not found in the registry",
        errors.FailedPrecondition: "the registry served a malformed image",
        errors.DeadlineExceeded: "the registry timed out", errors.Unavailable: "registry unreachable"}
    for words, cls in ((_UNAUTH, errors.Unauthenticated), (_DENIED, errors.PermissionDenied),
                       (_MALFORMED, errors.FailedPrecondition),
                       (_NOT_FOUND, errors.NotFound), (("deadline exceeded", "timeout"), errors.DeadlineExceeded),
                       (_UNAVAILABLE, errors.Unavailable)):
        if any(w in text for w in words):
            reason = why.get(cls, "")
            if cls is errors.Unauthenticated:
                reason = ("the registry's token service refused the request" if "token" in text
                          else "the registry requires credentials (or refused the ones given)")
            return cls(f"pull of {ref}: {reason} ({err})")
    if isinstance(err, errors.Unknown):      # the registry or the daemon failed in a way we cannot name
        return errors.Unavailable(f"pull of {ref} through containerd's Transfer service failed: {err}")
    return err


async def pull(app: App, ref: reference.Reference, creds: Credentials, progress: content.Progress,
               pinned: bool) -> LocalImage:
    """Pull ``ref`` through Transfer, then write criproxy's three records; the lease covers it all."""
    started = time.monotonic()
    labels = records.labels_for(pinned)
    jobs = _Jobs(progress)
    side: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    log.info("pulling %s through containerd's Transfer service", ref)
    try:
        async with app.ctrd.lease("pull", {PULL_LEASE: str(app.config.listen)}) as lease:
            progress_id, progress_call = await _open_stream(app, "progress")
            side.append(progress_call)
            tasks.append(asyncio.ensure_future(_read_progress(progress_call, jobs)))
            auth_id = ""
            if not creds.empty:
                auth_id, auth_call = await _open_stream(app, "creds")
                side.append(auth_call)
                tasks.append(asyncio.ensure_future(_serve_credentials(auth_call, creds)))
            try:
                await app.ctrd.transfer.Transfer(request_for(app, ref, labels, auth_id, progress_id), lease=lease)
            except errors.Unimplemented:
                forget(app)
                raise
            except errors.CriError as e:
                raise classify(e, ref) from None
            got = await app.ctrd.images.Get(images_pb.GetImageRequest(name=str(ref)))
            t = got.image.target
            root = Descriptor(t.media_type, t.digest, t.size)
            first = await describe(app, t, [])
            names = records.names_for(ref, root.digest, first.id)
            await records.put_all(app, names, root, labels)
    finally:
        for call in side:
            call.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    progress.layers_done = progress.layers_total = len(first.config.get("rootfs", {}).get("diff_ids", []))
    note = (f"pulled {ref} ({first.id}) through Transfer: {progress.describe()} "
            f"in {time.monotonic() - started:.2f}s")
    log.info("%s", note)
    trace.note(note)
    return dataclasses.replace(first, names=sorted(names))
