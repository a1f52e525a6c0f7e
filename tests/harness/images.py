"""Test OCI image layouts built from files on this machine (no network), cached across sessions.

An image is declared as data: a list of layers, each a mapping of in-image path to an entry
(``File``, ``Symlink``, ``Dir``, ``Whiteout``, ``Fifo``), plus an ``ImageConfig``. ``build_image`` writes each
layer as a deterministic tar, adds it with ``umoci raw add-layer`` and sets the config with
``umoci config``. The result is cached under ``<repo>/.testenv/cache/images`` keyed by a hash of
every input byte, so a second session reuses it and a changed input rebuilds it.

To add an image for a test::

    layout = build_image("hello", "v1", {"hello.txt": File(b"hi\\n")},
                         ImageConfig(cmd=["cat", "/hello.txt"]), base=busybox_layers())
    testenv.registry.push(layout)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .proc import HarnessError, run

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".testenv" / "cache"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILDER_VERSION = "1"  # bump to invalidate every cached image after a change in how they are built
MTIME = 1_700_000_000  # fixed so layers (and so digests) are reproducible


@dataclass(frozen=True)
class File:
    """A regular file: ``content`` is bytes/str, or a host Path whose bytes are copied."""

    content: bytes | str | Path
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    def data(self) -> bytes:
        if isinstance(self.content, Path):
            return self.content.read_bytes()
        return self.content.encode() if isinstance(self.content, str) else self.content


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Whiteout:
    """Deletes the path from lower layers (OCI ``.wh.`` file)."""


@dataclass(frozen=True)
class Fifo:
    """A named pipe (tar FIFOTYPE; containerd's unpack makes it with mkfifo)."""

    mode: int = 0o644


Entry = File | Symlink | Dir | Whiteout | Fifo
Layer = Mapping[str, Entry]


@dataclass(frozen=True)
class ImageConfig:
    """The subset of the OCI image config tests need; maps onto ``umoci config`` flags."""

    cmd: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    env: Sequence[str] = (DEFAULT_PATH,)
    user: str | None = None
    workdir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: Sequence[str] = ()
    volumes: Sequence[str] = ()
    stop_signal: str | None = None

    def umoci_args(self) -> list[str]:
        args: list[str] = []
        for flag, values in (("cmd", self.cmd or ()), ("entrypoint", self.entrypoint or ()),
                             ("env", self.env), ("exposedports", self.exposed_ports),
                             ("volume", self.volumes)):
            for v in values:
                args += [f"--config.{flag}", v]
        for k, v in sorted(self.labels.items()):
            args += ["--config.label", f"{k}={v}"]
        for flag, value in (("user", self.user), ("workingdir", self.workdir),
                            ("stopsignal", self.stop_signal)):
            if value is not None:
                args += [f"--config.{flag}", value]
        return args


@dataclass(frozen=True)
class ImageLayout:
    """A built OCI layout holding one tagged image."""

    name: str
    tag: str
    path: Path

    @property
    def oci_ref(self) -> str:
        """The skopeo/containers-image transport reference (``oci:PATH:TAG``)."""
        return f"oci:{self.path}:{self.tag}"

    def manifest_digest(self) -> str:
        """Digest of the tagged manifest (what a registry reports for name:tag)."""
        index = json.loads((self.path / "index.json").read_text())
        for m in index["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == self.tag:
                return str(m["digest"])
        raise HarnessError(f"tag {self.tag} not in {self.path}")


def _entry_key(path: str, e: Entry) -> list[object]:
    if isinstance(e, File):
        return [path, "f", e.mode, e.uid, e.gid, hashlib.sha256(e.data()).hexdigest()]
    if isinstance(e, Symlink):
        return [path, "l", e.target]
    if isinstance(e, Dir):
        return [path, "d", e.mode, e.uid, e.gid]
    if isinstance(e, Fifo):
        return [path, "p", e.mode]
    return [path, "w"]


def cache_key(name: str, tag: str, layers: Sequence[Layer], config: ImageConfig) -> str:
    """Hash of every input of a build, so the cache is never stale."""
    doc = {"v": BUILDER_VERSION, "name": name, "tag": tag,
           "layers": [[_entry_key(p, layer[p]) for p in sorted(layer)] for layer in layers],
           "config": asdict(config)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()


def _tarinfo(name: str, kind: bytes, mode: int = 0o755, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, MTIME
    return ti


def _layer_tar(layer: Layer) -> bytes:
    """A deterministic uncompressed tar of ``layer``; missing parent directories become 0755 dirs."""
    entries: dict[str, Entry] = {p.strip("/"): e for p, e in layer.items()}
    for p in list(entries):
        parts = p.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Dir())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(entries):
            e = entries[p]
            if isinstance(e, File):
                data = e.data()
                ti = _tarinfo(p, tarfile.REGTYPE, e.mode, e.uid, e.gid)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            elif isinstance(e, Symlink):
                ti = _tarinfo(p, tarfile.SYMTYPE, 0o777)
                ti.linkname = e.target
                tar.addfile(ti)
            elif isinstance(e, Dir):
                tar.addfile(_tarinfo(p, tarfile.DIRTYPE, e.mode, e.uid, e.gid))
            elif isinstance(e, Fifo):
                tar.addfile(_tarinfo(p, tarfile.FIFOTYPE, e.mode))
            else:
                head, _, base = p.rpartition("/")
                wh = f"{head}/.wh.{base}" if head else f".wh.{base}"
                tar.addfile(_tarinfo(wh, tarfile.REGTYPE, 0o644))
    return buf.getvalue()


def _umoci_build(dest: Path, tag: str, layers: Sequence[Layer], config: ImageConfig) -> None:
    image = f"{dest}:{tag}"
    run(["umoci", "init", "--layout", str(dest)])
    run(["umoci", "new", "--image", image])
    for i, layer in enumerate(layers):
        tar_path = dest.parent / f"{dest.name}.layer{i}.tar"
        tar_path.write_bytes(_layer_tar(layer))
        try:
            run(["umoci", "raw", "add-layer", "--image", image, str(tar_path)])
        finally:
            tar_path.unlink()
    run(["umoci", "config", "--image", image, *config.umoci_args()])
    run(["umoci", "gc", "--layout", str(dest)])


def build_image(name: str, tag: str, files: Layer | None = None, config: ImageConfig | None = None,
                base: Sequence[Layer] = (), cache_dir: Path = DEFAULT_CACHE) -> ImageLayout:
    """Build (or reuse from cache) an image whose layers are ``base`` then ``files``."""
    config = config or ImageConfig()
    layers = [*base, *([files] if files else [])]
    key = cache_key(name, tag, layers, config)
    final = cache_dir / "images" / f"{name}-{tag}-{key[:16]}"
    if (final / "index.json").exists():
        return ImageLayout(name, tag, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=final.parent))
    try:
        _umoci_build(work / "layout", tag, layers, config)
        try:
            os.rename(work / "layout", final)
        except OSError:
            if not (final / "index.json").exists():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImageLayout(name, tag, final)


# --- the standard images --------------------------------------------------------------------

BUSYBOX = Path("/bin/busybox")
PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
"""
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction term = {.sa_handler = on_term}, chld = {.sa_handler = on_chld, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGCHLD, &chld, NULL);
    for (;;) pause();
}
"""


def busybox_applets() -> list[str]:
    """In-image paths of every applet the host's static busybox provides (``sbin/ip``, ``bin/sh``…)."""
    out = run([str(BUSYBOX), "--list-full"])
    return sorted({p.strip("/") for p in out.split() if p.strip("/") != "bin/busybox"})


def busybox_layers() -> list[Layer]:
    """The busybox root filesystem as one layer (reusable as ``base=`` for derived images)."""
    layer: dict[str, Entry] = {"bin/busybox": File(BUSYBOX, 0o755)}
    layer.update({p: Symlink("/bin/busybox") for p in busybox_applets()})
    layer.update({
        "etc/passwd": File(PASSWD), "etc/group": File(GROUP), "root": Dir(0o700),
        "home/app": Dir(0o755, 1000, 1000), "tmp": Dir(0o1777), "var/tmp": Dir(0o1777),
        "proc": Dir(), "sys": Dir(), "dev": Dir(), "etc/hostname": File(""),
        "etc/hosts": File("127.0.0.1 localhost\n"), "etc/resolv.conf": File(""),
    })
    return [layer]


def build_busybox(cache_dir: Path = DEFAULT_CACHE) -> ImageLayout:
    """``busybox:latest``: static busybox, users root/app(1000), groups app(1000)/extra(2000)."""
    return build_image("busybox", "latest", None, ImageConfig(cmd=["sh"]), base=busybox_layers(),
                       cache_dir=cache_dir)


def compile_pause(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The static pause binary, compiled once per source hash."""
    digest = hashlib.sha256(PAUSE_C.encode()).hexdigest()[:16]
    out = cache_dir / "bin" / f"pause-{digest}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, binary = Path(tmp, "pause.c"), Path(tmp, "pause")
        src.write_text(PAUSE_C)
        try:
            run(["gcc", "-static", "-O2", "-o", str(binary), str(src)])
        except (OSError, subprocess.SubprocessError) as e:
            raise HarnessError(f"cannot compile pause: {e}") from e
        with contextlib.suppress(FileExistsError):
            os.rename(binary, out)
    return out


def build_pause(cache_dir: Path = DEFAULT_CACHE) -> ImageLayout:
    """``pause:3.9``: a static pause that reaps children and exits 0 on SIGTERM/SIGINT."""
    return build_image("pause", "3.9", {"pause": File(compile_pause(cache_dir), 0o755)},
                       ImageConfig(entrypoint=["/pause"], env=()), cache_dir=cache_dir)


def build_standard_images(cache_dir: Path = DEFAULT_CACHE) -> dict[str, ImageLayout]:
    """Every image the session pushes to its registry, by name."""
    return {"busybox": build_busybox(cache_dir), "pause": build_pause(cache_dir)}
