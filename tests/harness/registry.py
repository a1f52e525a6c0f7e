"""A private CNCF distribution registry on 127.0.0.1 with a free port, fed from OCI layouts.

Each session runs its own (storage in the session dir) so concurrent suites never see each other's
images. Optional htpasswd auth lets credential tests run a second, protected registry.
"""

from __future__ import annotations

import base64
import urllib.error
from pathlib import Path

from .images import ImageLayout
from .proc import Daemon, HarnessError, free_port, http_get, run, wait_until


class Registry:
    """``docker-registry serve`` under ``base``; ``host`` is ``127.0.0.1:PORT`` once started."""

    def __init__(self, base: Path, auth: tuple[str, str] | None = None) -> None:
        self.base = base
        self.auth = auth
        self.port = 0
        self.daemon: Daemon | None = None

    @property
    def host(self) -> str:
        if not self.port:
            raise HarnessError("registry not started")
        return f"127.0.0.1:{self.port}"

    def ref(self, name: str, tag: str = "latest") -> str:
        """A pullable reference for ``name:tag`` in this registry."""
        return f"{self.host}/{name}:{tag}"

    def _write_config(self) -> Path:
        storage = self.base / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
                 f"    rootdirectory: {storage}", "  delete:", "    enabled: true", "http:",
                 f"  addr: 127.0.0.1:{self.port}"]
        if self.auth:
            htpasswd = self.base / "htpasswd"
            htpasswd.write_text(run(["htpasswd", "-Bbn", *self.auth]))
            lines += ["auth:", "  htpasswd:", "    realm: criproxy-test", f"    path: {htpasswd}"]
        cfg = self.base / "config.yml"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def _answers(self) -> bool:
        try:
            http_get(f"http://{self.host}/v2/", timeout=1)
            return True
        except urllib.error.HTTPError as e:
            return e.code == 401 and self.auth is not None
        except OSError:
            return False

    def start(self, timeout: float = 30.0, attempts: int = 5) -> None:
        """Start on a free port; retry with another port if one was taken in the meantime."""
        self.base.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            self.port = free_port()
            cfg = self._write_config()
            self.daemon = Daemon("registry", ["docker-registry", "serve", str(cfg)], self.base / "registry.log")
            self.daemon.start()
            try:
                wait_until(lambda: self._answers() or not self._alive(), timeout, f"registry on {self.host}")
            except HarnessError as e:
                self.stop()
                raise HarnessError(f"{e}\n{self.daemon.log_tail()}") from e
            if self._alive():
                return
        raise HarnessError(f"registry failed to start:\n{self.daemon.log_tail() if self.daemon else ''}")

    def _alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop(grace=5)

    def push(self, layout: ImageLayout, name: str | None = None, tag: str | None = None) -> str:
        """Copy an OCI layout into the registry as ``name:tag``; returns the pullable reference."""
        ref = self.ref(name or layout.name, tag or layout.tag)
        argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.auth:
            argv += ["--dest-creds", f"{self.auth[0]}:{self.auth[1]}"]
        run([*argv, layout.oci_ref, f"docker://{ref}"])
        return ref

    def auth_header(self) -> str:
        """The Basic auth header value for this registry's credentials (for raw HTTP checks)."""
        if not self.auth:
            raise HarnessError("registry has no auth")
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    def write_hosts(self, hosts_dir: Path) -> Path:
        """Add this registry to a containerd-style ``config_path`` dir as a plain-http host."""
        d = hosts_dir / self.host
        d.mkdir(parents=True, exist_ok=True)
        url = f"http://{self.host}"
        (d / "hosts.toml").write_text(
            f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve", "push"]\n')
        return d / "hosts.toml"
