"""PullImage through criproxy vs containerd's built-in CRI on the same containerd, and criproxy's RSS.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.bench_pull [REPS] [BIG_MIB]``.

1. Ratio: a ~200 MiB image of 5 gzip layers (random bytes, so every side really moves 200 MiB) is
   pulled from the local registry by criproxy with its own registry client (namespace ``bench``),
   on containerd 2.x also by criproxy through the Transfer service (``benchtr``), and by the built-in
   CRI (``k8s.io``), rotating which goes first, REPS times. After each pull the image is removed
   through the same CRI (a synchronous delete: containerd's GC frees content and snapshots), so the
   next pull, on either side, finds nothing in containerd's shared content store.
2. Memory: criproxy's RSS is sampled every 10 ms while it pulls a BIG_MIB (default 1024) single,
   uncompressed layer; the growth over its RSS just before must stay small because blobs are
   streamed, never buffered whole (the own client: through Transfer no byte reaches criproxy).
   BIG_MIB 0 skips it.
Targets: median ratio <= 1.1x (issue 3), Transfer on 2.1 <= 1.05x (issue 11); RSS growth <= 32 MiB.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

from benchmarks.common import dump, rss_mib
from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.harness.images import ImageLayout
from tests.harness.proc import run

CHUNK = 1 << 20


class _Random(io.RawIOBase):
    """``size`` random bytes, read in pieces (so a 1 GiB layer is never in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left, CHUNK)
        b[:n] = os.urandom(n)
        self.left -= n
        return n


class _Hashing:
    """A write-only file that hashes what passes (the uncompressed tar → diff ID)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.h, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.out.write(data)


def _write_layer(blobs: Path, size: int, compress: bool, index: int) -> tuple[dict[str, object], str]:
    """One layer of ``size`` random bytes as a blob; returns (descriptor, diff ID)."""
    tmp = blobs / f".layer-{index}"
    with open(tmp, "wb") as f:
        sink: BinaryIO = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1, mtime=0) if compress else f  # type: ignore[assignment]
        hashing = _Hashing(sink)
        with tarfile.open(fileobj=hashing, mode="w|") as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo(f"data-{index}.bin")
            info.size, info.mtime = size, 1_700_000_000
            tar.addfile(info, io.BufferedReader(_Random(size), CHUNK))
        if compress:
            sink.close()
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while piece := f.read(CHUNK):
            h.update(piece)
    os.rename(tmp, blobs / h.hexdigest())
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    return {"mediaType": media, "digest": f"sha256:{h.hexdigest()}", "size": (blobs / h.hexdigest()).stat().st_size}, \
        f"sha256:{hashing.h.hexdigest()}"


def _blob(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_layout(dest: Path, name: str, layer_sizes: list[int], compress: bool) -> ImageLayout:
    """An OCI layout with one image of random layers, written straight to disk."""
    shutil.rmtree(dest, ignore_errors=True)
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layers, diff_ids = zip(*(_write_layer(blobs, s, compress, i) for i, s in enumerate(layer_sizes)), strict=True)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}
    cfg = _blob(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg}, "layers": list(layers)}
    man = _blob(blobs, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
                                                "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
    (dest / "index.json").write_text(json.dumps(index))
    return ImageLayout(name, "bench", dest)


def _pull(client: CriClient, ref: str) -> float:
    t0 = time.perf_counter()
    client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=600)
    return time.perf_counter() - t0


def _remove(client: CriClient, ref: str) -> None:
    client.image.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)), timeout=600)


def _content_left(env: Environment, digest: str) -> bool:
    return any(digest in env.ctr("content", "ls", "-q", namespace=ns)
               for ns in ("k8s.io", "bench", "benchtr", "benchrss"))


def ratio(env: Environment, sides: dict[str, CriClient], reps: int) -> dict[str, object]:
    """Each side pulls and removes the image once per rep; the order rotates every rep (interleaved)."""
    layout = build_layout(env.base / "bench-200", "bench200", [40 << 20] * 5, compress=True)
    ref = env.push(layout, "bench/pull200", "bench")
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(reps):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            times[name].append(_pull(sides[name], ref))
            _remove(sides[name], ref)
        top = json.loads((layout.path / "index.json").read_text())["manifests"][0]["digest"]
        assert not _content_left(env, top), "content survived RemoveImage: the next pull would not download"
        print(f"  rep {i + 1}: " + "  ".join(f"{n} {times[n][-1]:.2f}s" for n in names))
    medians = {n: statistics.median(t) for n, t in times.items()}
    base = medians["built-in"]
    out: dict[str, object] = {"seconds": times, "median_s": medians}
    for n in names:
        if n != "built-in":
            out[f"ratio_{n}"] = medians[n] / base
            print(f"pull 200 MiB x5 layers: {n} median {medians[n]:.2f}s, built-in median {base:.2f}s, "
                  f"ratio {medians[n] / base:.2f}x")
    if "transfer" in medians and "own" in medians:
        print(f"  transfer / own: {medians['transfer'] / medians['own']:.2f}x")
    return out


def peak_rss(env: Environment, mib: int) -> dict[str, object]:
    """A fresh criproxy (so earlier pulls' freed memory does not hide growth), warmed by one small pull."""
    layout = build_layout(env.base / "bench-big", "benchbig", [mib << 20], compress=False)
    ref = env.push(layout, "bench/big", "bench")
    shutil.rmtree(layout.path)
    proc = env.new_criproxy("benchrss", extra_args=["--log-level", "info", "--pull-method", "own"],
                            namespace="benchrss")
    pid = proc.pid or 0
    with proc.client() as ours:
        _pull(ours, env.busybox_image)
        return _sample_pull(ours, pid, ref, mib)


def _sample_pull(ours: CriClient, pid: int, ref: str, mib: int) -> dict[str, object]:
    before = rss_mib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.01)
    t = threading.Thread(target=sample)
    t.start()
    try:
        took = _pull(ours, ref)
    finally:
        done.set()
        t.join()
    _remove(ours, ref)
    growth = peak[0] - before
    print(f"pull {mib} MiB single layer: {took:.1f}s; criproxy RSS {before:.1f} -> peak {peak[0]:.1f} MiB, "
          f"growth {growth:.1f} MiB (target <= 32 MiB)")
    return {"big_mib": mib, "big_pull_s": took, "rss_before_mib": before, "rss_peak_mib": peak[0],
            "rss_growth_mib": growth}


def main(reps: int = 3, big_mib: int = 1024) -> None:
    env = Environment.create()
    try:
        info = ["--log-level", "info"]
        procs = {"own": env.new_criproxy("bench", extra_args=[*info, "--pull-method", "own"], namespace="bench")}
        if env.ctrd.major >= 2:
            procs["transfer"] = env.new_criproxy("benchtr", extra_args=[*info, "--pull-method", "transfer"],
                                                 namespace="benchtr")
        results: dict[str, object] = {"bench": "pull", "reps": reps, "containerd": env.ctrd.version}
        with contextlib.ExitStack() as stack:
            sides = {name: stack.enter_context(p.client()) for name, p in procs.items()}
            sides["built-in"] = stack.enter_context(env.builtin_cri())
            results.update(ratio(env, sides, reps))
        if big_mib:
            results.update(peak_rss(env, big_mib))
        dump(results)
    finally:
        run(["sync"])
        env.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 1024)
