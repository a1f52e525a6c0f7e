"""The AppArmor checks, shared by the integration tests (tests/integration/containers/test_apparmor.py)
and the VM lane (scripts/vm/apparmor_check.py, run inside a guest with AppArmor), so both run the
same containers with the same expectations.

On a host with AppArmor: a Localhost profile that denies writes is loaded and a container under it
cannot write; a permissive one lets it; a profile that is not loaded is refused at CreateContainer
(INVALID_ARGUMENT naming it) and nothing is created; RuntimeDefault and an unset profile run under
criproxy's default profile (``/proc/self/attr/current``), which denies opening /proc/kcore, while
Unconfined and a privileged container run without a profile. On a host without AppArmor every check that asks for a
profile expects INVALID_ARGUMENT "AppArmor is not enabled", and an unset profile runs as it is.

Each check returns ``Result`` lines; a pytest test asserts them, the VM script prints them. Nothing
here imports pytest (the guest's venv has criproxy's runtime dependencies only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import grpc

from criproxy.protos import cri
from tests.harness.client import CriClient

DENY_WRITE = "criproxy-test-deny-write"
PERMISSIVE = "criproxy-test-permissive"
NOT_LOADED = "criproxy-test-not-loaded"
# criproxy's default profile, written out here rather than imported from the code under test.
DEFAULT = "criproxy-default"
NOT_ENABLED = "AppArmor is not enabled"

# Test profiles: everything a shell needs, and (for DENY_WRITE) no file writes anywhere.
_BODY = "  file,\n  network,\n  capability,\n  signal,\n  ptrace,\n  umount,\n"
PROFILES = {
    DENY_WRITE: f"profile {DENY_WRITE} flags=(attach_disconnected,mediate_deleted) {{\n{_BODY}"
                "  deny /** w,\n}\n",
    PERMISSIVE: f"profile {PERMISSIVE} flags=(attach_disconnected,mediate_deleted) {{\n{_BODY}}}\n",
}

# What the container reports: its label, whether it could write a file, and how opening /proc/kcore
# fails: the default profile denies it (EACCES, "Permission denied") before the kernel's own
# CAP_SYS_RAWIO check would (EPERM, "Operation not permitted").
PROBE = ("cat /proc/self/attr/current; if touch /tmp/apparmor-probe; then echo WRITE-OK; "
         "else echo WRITE-DENIED; fi; if head -c1 /proc/kcore 2>&1 >/dev/null | grep -q 'Permission denied'; "
         "then echo KCORE-EACCES; else echo KCORE-NOT-EACCES; fi")


class Result(NamedTuple):
    name: str
    ok: bool
    why: str = ""


def host_enabled() -> bool:
    """Whether criproxy applies AppArmor here, by the harness's own test (not criproxy's code): the
    kernel has it on (securityfs dir, ``enabled`` = Y), apparmor_parser is installed, and this is not
    a container (``container`` unset). Otherwise criproxy answers "AppArmor is not enabled"."""
    enabled = Path("/sys/module/apparmor/parameters/enabled")
    return (Path("/sys/kernel/security/apparmor").is_dir() and enabled.exists()
            and enabled.read_text().startswith("Y") and parser() is not None and not os.environ.get("container"))


def parser() -> str | None:
    return shutil.which("apparmor_parser") or next(
        (p for p in ("/sbin/apparmor_parser", "/usr/sbin/apparmor_parser") if Path(p).exists()), None)


def load_test_profiles() -> None:
    """Load (or replace) the test profiles, and make sure NOT_LOADED is not loaded."""
    exe = parser()
    if exe is None:
        raise RuntimeError("apparmor_parser is not installed (package apparmor)")
    for text in PROFILES.values():
        subprocess.run([exe, "-Kr"], input=text.encode(), check=True, capture_output=True, timeout=300)
    subprocess.run([exe, "-R"], input=f"profile {NOT_LOADED} {{\n}}\n".encode(), capture_output=True,
                   timeout=300)


def unload_test_profiles() -> None:
    exe = parser()
    if exe is not None:
        for text in PROFILES.values():
            subprocess.run([exe, "-R"], input=text.encode(), capture_output=True, timeout=300)


def loaded(name: str) -> bool:
    text = Path("/sys/kernel/security/apparmor/profiles").read_text()
    return any(line.rsplit(" (", 1)[0] == name for line in text.splitlines())


def localhost(name: str, prefixed: bool) -> cri.SecurityProfile:
    """A Localhost profile as kubelets send it in the typed field (some with the prefix)."""
    return cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost,
                               localhost_ref=("localhost/" if prefixed else "") + name)


@dataclass
class Checks:
    """The checks against one CRI endpoint and pod. ``containerd_ids`` lists the containerd containers
    of criproxy's namespace (to see that a refused create leaves none); ``timeout`` bounds each wait
    (long in an emulated guest)."""

    client: CriClient
    pod_id: str
    pod_config: cri.PodSandboxConfig
    image: str
    containerd_ids: Callable[[], set[str]]
    enabled: bool = field(default_factory=host_enabled)
    timeout: float = 60.0
    _n: int = 0

    def _config(self, name: str, profile: cri.SecurityProfile | None = None, legacy: str = "",
                privileged: bool = False) -> cri.ContainerConfig:
        self._n += 1
        cname = f"{name}-{self._n}"
        cfg = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=cname), image=cri.ImageSpec(image=self.image),
                                  command=["sh", "-c", PROBE], log_path=f"{cname}/0.log")
        sc = cfg.linux.security_context
        sc.namespace_options.pid = cri.CONTAINER
        sc.privileged = privileged
        sc.apparmor_profile = legacy
        if profile is not None:
            sc.apparmor.CopyFrom(profile)
        return cfg

    def _run(self, cfg: cri.ContainerConfig) -> tuple[int, str]:
        """Create, start, wait for the exit; (exit code, the log's text lines joined)."""
        rt = self.client.runtime
        cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=self.pod_id, config=cfg,
                                                            sandbox_config=self.pod_config),
                                 timeout=self.timeout * 5).container_id
        try:
            rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=self.timeout * 5)
            deadline = time.monotonic() + self.timeout * 5
            while True:
                st = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid), timeout=self.timeout).status
                if st.state == cri.CONTAINER_EXITED or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            logfile = Path(self.pod_config.log_directory, cfg.log_path)
            text = logfile.read_text() if logfile.exists() else ""
            lines = [ln.split(" ", 3)[3] for ln in text.splitlines() if ln.count(" ") >= 3]
            return (st.exit_code if st.state == cri.CONTAINER_EXITED else -1), "\n".join(lines)
        finally:
            rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0), timeout=self.timeout * 5)
            rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid), timeout=self.timeout * 5)

    def _refused(self, name: str, cfg: cri.ContainerConfig, wanted: str) -> list[Result]:
        """CreateContainer must answer INVALID_ARGUMENT with ``wanted`` in its message and create
        nothing (no CRI container in the pod, no containerd container)."""
        before = self.containerd_ids()
        try:
            cid = self.client.runtime.CreateContainer(cri.CreateContainerRequest(
                pod_sandbox_id=self.pod_id, config=cfg, sandbox_config=self.pod_config),
                timeout=self.timeout * 5).container_id
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            ok = code == grpc.StatusCode.INVALID_ARGUMENT and wanted in details
            listed = self.client.runtime.ListContainers(cri.ListContainersRequest(
                filter=cri.ContainerFilter(pod_sandbox_id=self.pod_id))).containers
            made = [c.metadata.name for c in listed if c.metadata.name == cfg.metadata.name]
            left = self.containerd_ids() - before
            return [Result(f"{name}: INVALID_ARGUMENT naming {wanted!r}", ok, f"{code.name}: {details}"),
                    Result(f"{name}: nothing created", not made and not left, f"CRI {made}, containerd {left}")]
        self.client.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
        return [Result(f"{name}: refused", False, "CreateContainer succeeded")]

    # ---- the checks ------------------------------------------------------------------------------------

    def deny_write(self) -> list[Result]:
        """A loaded Localhost profile denying writes: the container runs under it and cannot write."""
        name = f"Localhost {DENY_WRITE}"
        cfg = self._config("deny", localhost(DENY_WRITE, prefixed=False), legacy=f"localhost/{DENY_WRITE}")
        if not self.enabled:
            return self._refused(name, cfg, NOT_ENABLED)
        code, out = self._run(cfg)
        return [Result(f"{name}: container runs under it", f"{DENY_WRITE} (enforce)" in out, out),
                Result(f"{name}: its write is denied", "WRITE-DENIED" in out and "Permission denied" in out
                       and code == 0, f"exit {code}: {out}")]

    def permissive(self) -> list[Result]:
        """A loaded permissive profile, named with the ``localhost/`` prefix in localhost_ref (the form
        runc could not apply): the container runs under it and its write succeeds."""
        name = f"Localhost localhost/{PERMISSIVE}"
        cfg = self._config("allow", localhost(PERMISSIVE, prefixed=True))
        if not self.enabled:
            return self._refused(name, cfg, NOT_ENABLED)
        code, out = self._run(cfg)
        return [Result(f"{name}: container runs under {PERMISSIVE}", f"{PERMISSIVE} (enforce)" in out, out),
                Result(f"{name}: its write succeeds", "WRITE-OK" in out and code == 0, f"exit {code}: {out}")]

    def not_loaded(self) -> list[Result]:
        """A Localhost profile the kernel does not have: refused at create, nothing made."""
        cfg = self._config("unloaded", localhost(NOT_LOADED, prefixed=False), legacy=f"localhost/{NOT_LOADED}")
        return self._refused(f"Localhost {NOT_LOADED} (not loaded)", cfg,
                             NOT_LOADED if self.enabled else NOT_ENABLED)

    def runtime_default(self) -> list[Result]:
        """RuntimeDefault (typed field and string): criproxy's default profile, which denies the LSM dir."""
        name = "RuntimeDefault"
        cfg = self._config("default", cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault),
                           legacy="runtime/default")
        if not self.enabled:
            return self._refused(name, cfg, NOT_ENABLED)
        code, out = self._run(cfg)
        return [Result(f"{name}: /proc/self/attr/current is {DEFAULT}", f"{DEFAULT} (enforce)" in out, out),
                Result(f"{name}: {DEFAULT} is loaded in the kernel", loaded(DEFAULT)),
                Result(f"{name}: {DEFAULT} denies /proc/kcore, allows ordinary writes", "KCORE-EACCES" in out
                       and "WRITE-OK" in out and code == 0, f"exit {code}: {out}")]

    def unconfined(self) -> list[Result]:
        """Unconfined (typed field and string): no profile, so /proc/kcore fails on the capability."""
        cfg = self._config("unconfined", cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined),
                           legacy="unconfined")
        code, out = self._run(cfg)
        first = out.splitlines()[0] if out else ""
        rows = [Result("Unconfined: runs, /proc/kcore not denied by a profile", code == 0
                       and "KCORE-NOT-EACCES" in out and "WRITE-OK" in out, f"exit {code}: {out}")]
        if self.enabled:
            rows.append(Result("Unconfined: /proc/self/attr/current is unconfined", first == "unconfined", out))
        return rows

    def unset(self) -> list[Result]:
        """No profile asked for: the default profile where AppArmor is on, nothing where it is not."""
        code, out = self._run(self._config("unset"))
        if not self.enabled:
            return [Result("unset profile: runs without AppArmor", code == 0 and "WRITE-OK" in out,
                           f"exit {code}: {out}")]
        return [Result(f"unset profile: runs under {DEFAULT}", f"{DEFAULT} (enforce)" in out, out)]

    def privileged(self) -> list[Result]:
        """A privileged container (in a privileged pod) with no or RuntimeDefault profile: unconfined."""
        rows = []
        runtime_default = cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault)
        for label, profile in (("unset", None), ("RuntimeDefault", runtime_default)):
            cfg = self._config("priv", profile, privileged=True)
            if not self.enabled and profile is not None:
                rows += self._refused(f"privileged, {label}", cfg, NOT_ENABLED)
                continue
            code, out = self._run(cfg)
            first = out.splitlines()[0] if out else ""
            ok = first == "unconfined" if self.enabled else code == 0
            rows.append(Result(f"privileged, {label}: runs unconfined", ok, f"exit {code}: {out}"))
        return rows
