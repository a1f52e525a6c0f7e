"""AppArmor for containers, by containerd's CRI rules.

Which profile a container asks for: the typed ``apparmor`` field when it is set, else the deprecated
``apparmor_profile`` string. Kubelets send both, the string as ``runtime/default``, ``unconfined`` or
``localhost/<name>``; the ``localhost/`` prefix is dropped from the typed field's ``localhost_ref``
too, because some kubelets put it there and the kernel knows no profile of that name (runc then
fails the start with a bare ENOENT from ``/proc/self/attr/apparmor/exec``).

What the container gets (``plan``):

- Unconfined: no profile.
- RuntimeDefault, and an unset profile: criproxy's default profile (``criproxy-default``); a
  privileged container runs unconfined instead (it may do anything the profile would deny anyway).
- Localhost: that profile, privileged or not, but only when the kernel has it loaded (its list in
  securityfs); otherwise INVALID_ARGUMENT naming it and nothing is created — checked at
  CreateContainer, not left to fail at start.
- On a host without AppArmor, any profile asked for but Unconfined is INVALID_ARGUMENT ("AppArmor is
  not enabled on this host", with the reason) rather than silently running unconfined; an unset one
  runs as it is. Without ``apparmor_parser``, or inside a container, AppArmor counts as not enabled,
  as for containerd 1.6/1.7 (the default profile could not be loaded, nor the host's managed).

The default profile is generated from ``apparmor_default.tmpl`` (containerd's
``cri-containerd.apparmor.d`` rules, under criproxy's own name) and loaded with ``apparmor_parser``
the first time a container needs it and the kernel does not have it. A profile of that name already
loaded is used as it is, as containerd does: a newer criproxy's rules arrive after a reboot or
``apparmor_parser -R``. The pause container gets no profile (containerd gives it none either).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import shutil
import socket
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from criproxy import errors
from criproxy.oci.spec import Option, Spec
from criproxy.protos import cri

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "criproxy-default"
TEMPLATE = "apparmor_default.tmpl"
LOCALHOST_PREFIX = "localhost/"
SECURITYFS = Path("/sys/kernel/security/apparmor")
ENABLED_PARAM = Path("/sys/module/apparmor/parameters/enabled")
POLICY_DIR = Path("/etc/apparmor.d")       # where apparmor_parser resolves the template's includes
PROFILES_MAX_BYTES = 16 << 20              # of the kernel's loaded-profile list read at most
LINE_MAX_BYTES = 64 << 10                  # of one line of it
PARSER_TIMEOUT = 120.0                     # apparmor_parser compiles the profile: slow on small nodes
PARSER_OUTPUT_MAX = 4096                   # bytes of its error output kept for the error message
LABEL_MAX_BYTES = 4096
# A peer label written into a rule as it is: a plain name or a path. Labels with spaces, quotes or
# glob characters are left out rather than quoted (the ``unconfined`` rule covers the usual daemon).
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/+-]*")

Kind = Literal["unset", "runtime/default", "unconfined", "localhost"]


@dataclass(frozen=True)
class Request:
    """What the security context asks for; ``name`` only for a Localhost profile (no prefix)."""

    kind: Kind
    name: str = ""


@dataclass(frozen=True)
class Plan:
    """The profile to put in the spec ("" = none) and whether it is criproxy's default one (loaded
    on demand) rather than a Localhost one (which must already be loaded)."""

    profile: str = ""
    default: bool = False


def requested(sc: cri.LinuxContainerSecurityContext) -> Request:
    """The profile asked for, the typed field preferred over the deprecated string."""
    if sc.HasField("apparmor"):
        return _from_field(sc.apparmor)
    return _from_string(sc.apparmor_profile)


def _localhost(name: str, given: str) -> Request:
    if not name:
        raise errors.InvalidArgument(f"AppArmor Localhost profile without a name ({given!r})")
    return Request("localhost", name)


def _from_field(p: cri.SecurityProfile) -> Request:
    if p.profile_type == cri.SecurityProfile.Localhost:
        return _localhost(p.localhost_ref.removeprefix(LOCALHOST_PREFIX), p.localhost_ref)
    if p.profile_type not in cri.SecurityProfile.ProfileType.values():
        raise errors.InvalidArgument(f"unknown AppArmor profile type {p.profile_type}")
    if p.localhost_ref:
        raise errors.InvalidArgument("AppArmor localhost_ref is only for a Localhost profile "
                                     f"(got {p.localhost_ref!r} with profile type "
                                     f"{cri.SecurityProfile.ProfileType.Name(p.profile_type)})")
    if p.profile_type == cri.SecurityProfile.RuntimeDefault:
        return Request("runtime/default")
    if p.profile_type == cri.SecurityProfile.Unconfined:
        return Request("unconfined")
    raise errors.InvalidArgument(f"unknown AppArmor profile type {p.profile_type}")


def _from_string(value: str) -> Request:
    if value == "":
        return Request("unset")
    if value in ("runtime/default", "unconfined"):
        return Request(value)           # type: ignore[arg-type]  # the two literals just compared
    if value.startswith(LOCALHOST_PREFIX):
        return _localhost(value.removeprefix(LOCALHOST_PREFIX), value)
    raise errors.InvalidArgument(f"AppArmor profile {value!r} is none of runtime/default, unconfined, "
                                 "localhost/<name>")


def plan(req: Request, privileged: bool, unsupported: str) -> Plan:
    """What to apply for ``req`` (see the module docstring); ``unsupported`` is ``host_support()``'s
    answer. Raises where the request cannot be honoured."""
    if unsupported:
        if req.kind in ("unset", "unconfined"):
            return Plan()
        asked = req.name if req.kind == "localhost" else req.kind
        raise errors.InvalidArgument(f"AppArmor profile {asked!r} requested but AppArmor is not enabled "
                                     f"on this host ({unsupported})")
    if req.kind == "unconfined":
        return Plan()
    if req.kind == "localhost":
        return Plan(req.name)
    return Plan() if privileged else Plan(DEFAULT_PROFILE, default=True)


@functools.cache
def host_support() -> str:
    """Why criproxy cannot apply AppArmor profiles here ("" = it can), looked at once. containerd's
    test: the kernel has AppArmor on (its securityfs dir, ``enabled`` = Y), ``apparmor_parser`` is
    installed (the default profile is loaded with it) and we do not run inside a container (one
    that sets ``container``: the profiles would be the host's to manage)."""
    try:
        on = SECURITYFS.is_dir() and ENABLED_PARAM.read_text().startswith("Y")
    except OSError:
        on = False
    if not on:
        return "the kernel has it off or not built in"
    if parser_path() is None:
        return "apparmor_parser is not installed"
    if os.environ.get("container"):
        return "criproxy runs inside a container"
    return ""


def parser_path() -> str | None:
    return shutil.which("apparmor_parser") or next(
        (p for p in ("/sbin/apparmor_parser", "/usr/sbin/apparmor_parser") if os.access(p, os.X_OK)), None)


def with_apparmor(profile: str) -> Option:
    def opt(spec: Spec) -> None:
        if profile:
            spec["process"]["apparmorProfile"] = profile
        else:
            spec["process"].pop("apparmorProfile", None)
    return opt


# ---- the kernel's loaded profiles (blocking: call in a thread) ---------------------------------------

def is_loaded(name: str, profiles: Path | None = None) -> bool:
    """Whether the kernel's list of loaded profiles (lines ``<name> (<mode>)``) holds ``name``; read
    a line at a time (at most LINE_MAX_BYTES each) and at most PROFILES_MAX_BYTES in all."""
    path = profiles if profiles is not None else SECURITYFS / "profiles"
    want = name.encode()
    read = 0
    try:
        with path.open("rb") as f:
            while read <= PROFILES_MAX_BYTES and (line := f.readline(LINE_MAX_BYTES)):
                read += len(line)
                if line.rstrip(b"\n").rsplit(b" (", 1)[0] == want:
                    return True
    except OSError as e:
        raise errors.FailedPrecondition(f"cannot read the kernel's AppArmor profile list {path}: "
                                        f"{e.strerror}") from None
    return False


def _label_of(pid: int | str) -> str:
    """A process's AppArmor label without its mode (``unconfined`` when unknown)."""
    for leaf in ("attr/apparmor/current", "attr/current"):
        try:
            with open(f"/proc/{pid}/{leaf}", "rb") as f:
                raw = f.read(LABEL_MAX_BYTES)
        except OSError:
            continue
        label = raw.decode(errors="replace").strip().split(" (", 1)[0]
        return label or "unconfined"
    return "unconfined"


def _peer_pid(sock: Path) -> int | None:
    """The pid of the process listening on a unix socket (SO_PEERCRED), None when it cannot be told."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(os.fspath(sock))
        pid = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4], "little")
        return pid or None
    except OSError:
        return None
    finally:
        s.close()


def daemon_labels(containerd_socket: Path | None) -> list[str]:
    """The labels of the daemons that signal containers (criproxy; containerd, whose label its shims
    and their runc inherit), for the profile's signal rules; ``unconfined`` has a rule of its own."""
    labels = [_label_of("self")]
    pid = _peer_pid(containerd_socket) if containerd_socket is not None else None
    if pid is not None:
        labels.append(_label_of(pid))
    out = []
    for label in labels:
        if label in ("unconfined", "runc", "crun", DEFAULT_PROFILE) or label in out:
            continue
        if _PLAIN_LABEL.fullmatch(label):
            out.append(label)
        else:
            log.warning("AppArmor: daemon label %r left out of %s's signal rules (not a plain name)",
                        label, DEFAULT_PROFILE)
    return out


def render_default(name: str, daemons: list[str], policy_dir: Path = POLICY_DIR) -> str:
    """The default profile's text for this host: the 3.0 ABI, tunables and base abstraction where the
    host's policy dir has them (else a definition of @{PROC}), and a signal rule per daemon label."""
    def has(rel: str) -> bool:
        return (policy_dir / rel).exists()
    preamble = []
    if has("abi/3.0"):
        preamble.append("abi <abi/3.0>,")
    preamble.append("#include <tunables/global>" if has("tunables/global") else "@{PROC}=/proc/")
    inner = "  #include <abstractions/base>" if has("abstractions/base") else ""
    rules = "\n".join(f"  signal (receive) peer={d}," for d in daemons)
    template = string.Template(resources.files("criproxy.oci").joinpath(TEMPLATE).read_text())
    return template.substitute(name=name, preamble="\n".join(preamble), inner=inner, daemons=rules)


# ---- loading the default profile -------------------------------------------------------------------

async def ensure_default(lock: asyncio.Lock, containerd_socket: Path | None) -> None:
    """Load criproxy's default profile unless the kernel has it (one load at a time: concurrent
    creates wait for the first and then find it loaded)."""
    if await asyncio.to_thread(is_loaded, DEFAULT_PROFILE):
        return
    async with lock:
        if await asyncio.to_thread(is_loaded, DEFAULT_PROFILE):
            return
        daemons = await asyncio.to_thread(daemon_labels, containerd_socket)
        text = await asyncio.to_thread(render_default, DEFAULT_PROFILE, daemons)
        await load_profile(text)
        log.info("AppArmor: loaded criproxy's default profile %s", DEFAULT_PROFILE)


async def load_profile(text: str) -> None:
    """Compile and load (or replace) a profile with ``apparmor_parser -Kr``, the text on its stdin."""
    parser = parser_path()
    if parser is None:                  # there at start (host_support), removed since
        raise errors.FailedPrecondition(
            f"apparmor_parser is no longer installed, so criproxy's default profile {DEFAULT_PROFILE} "
            "cannot be loaded: install the apparmor package (or ask for an Unconfined profile)")
    proc = await asyncio.create_subprocess_exec(parser, "-Kr", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        err = await asyncio.wait_for(_feed(proc, text.encode()), PARSER_TIMEOUT)
    except BaseException as e:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(e, TimeoutError):
            raise errors.Internal(f"apparmor_parser did not load {DEFAULT_PROFILE} within "
                                  f"{PARSER_TIMEOUT:.0f}s") from None
        raise
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()
        raise errors.Internal(f"apparmor_parser could not load {DEFAULT_PROFILE} "
                              f"(exit {proc.returncode}): {detail}")


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> bytes:
    """Write the profile to the parser, then keep the last PARSER_OUTPUT_MAX bytes of its error
    output until it exits."""
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(data)
    try:
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass                     # it exited early: its exit code and message say why
    proc.stdin.close()
    tail = b""
    while chunk := await proc.stderr.read(PARSER_OUTPUT_MAX):
        tail = (tail + chunk)[-PARSER_OUTPUT_MAX:]
    await proc.wait()
    return tail
