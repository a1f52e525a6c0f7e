"""Registry pieces the image tests need beyond the session registry.

- ``TokenRegistry``: a real CNCF registry configured for token auth, plus a tiny token service on
  loopback that checks Basic credentials and signs RS256 JWTs (with ``openssl``) whose ``x5c`` chains
  to the registry's ``rootcertbundle``, as Docker Hub's flow does.
- ``RegistryProxy``: a loopback HTTP proxy in front of a registry that counts requests and can stall
  blob bodies on command (to test shared downloads, the progress timeout and interrupted pulls).
- ``index_layout``: turn a built image layout into a multi-platform OCI index (linux/amd64 real,
  linux/arm64 and linux/arm/v7 variants with their own configs) for platform-selection tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

from .images import ImageLayout
from .proc import free_port, run
from .registry import Registry

ISSUER = "criproxy-test-issuer"
SERVICE = "criproxy-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """``GET /token?service=…&scope=…`` with Basic auth → ``{"token", "expires_in"}`` (loopback)."""

    def __init__(self, base: Path, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password
        self.key, self.cert = base / "token.key", base / "token.pem"
        self.requests = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=criproxy-token",
             "-keyout", str(self.key), "-out", str(self.cert)])
        der = run(["openssl", "x509", "-in", str(self.cert), "-outform", "PEM"])
        self._x5c = "".join(der.strip().splitlines()[1:-1])
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests += 1
                code, body = service.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def do_POST(self) -> None:  # OAuth2 refresh-token grant (AuthConfig.identity_token)
                service.requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                code, body = service.answer_form(parse_qs(self.rfile.read(length).decode()))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        q = parse_qs(urlsplit(path).query)
        good = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if authorization and authorization != good:
            return 401, {"details": "bad credentials"}
        access = []
        if authorization == good:
            for scope in q.get("scope", []):
                kind, name, actions = scope.split(":", 2)
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        return 200, {"token": self.sign(access), "expires_in": 300}

    refresh_token = "criproxy-test-refresh-token"

    def answer_form(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """``grant_type=refresh_token`` with our refresh token → an access token for the scopes."""
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [self.refresh_token]:
            return 401, {"details": "bad refresh token"}
        access = []
        for scope in " ".join(form.get("scope", [])).split():
            kind, name, actions = scope.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        return 200, {"access_token": self.sign(access), "expires_in": 300}

    def sign(self, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": self.user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class TokenRegistry(Registry):
    """A registry that accepts only tokens from our ``TokenService`` (users push with credentials)."""

    def __init__(self, base: Path, auth: tuple[str, str]) -> None:
        super().__init__(base, auth)
        self.tokens = TokenService(base / "token", *auth)

    def _write_config(self) -> Path:
        cfg = super()._write_config()
        text = cfg.read_text()
        text = text[:text.index("auth:")] if "auth:" in text else text
        text += (f"auth:\n  token:\n    realm: {self.tokens.realm}\n    service: {SERVICE}\n"
                 f"    issuer: {ISSUER}\n    rootcertbundle: {self.tokens.cert}\n")
        cfg.write_text(text)
        return cfg

    def start(self, timeout: float = 30.0, attempts: int = 5) -> None:
        self.tokens.start()
        super().start(timeout, attempts)

    def stop(self) -> None:
        super().stop()
        self.tokens.stop()


class TlsRegistry(Registry):
    """A registry serving https with a self-signed certificate for 127.0.0.1 (``ca`` is its PEM)."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.ca = base / "tls.pem"
        self.key = base / "tls.key"

    def _write_config(self) -> Path:
        if not self.ca.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(self.key), "-out", str(self.ca)])
        cfg = super()._write_config()
        cfg.write_text(cfg.read_text() + f"  tls:\n    certificate: {self.ca}\n    key: {self.key}\n")
        return cfg

    def _answers(self) -> bool:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx)).open(
                    f"https://{self.host}/v2/", timeout=1):
                return True
        except OSError:
            return False


class RegistryProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that counts requests and can stall blobs.

    ``stall_blobs`` set → blob responses send their headers and ``stall_after`` bytes, then wait until
    ``release()`` (or the client goes away). ``counts`` maps ``"GET /v2/<name>/blobs/<digest>"`` → n.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.stall_blobs = False
        self.stall_after = 64 * 1024
        self.stalled = threading.Event()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        self.port = free_port()
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        loop.run_forever()

    async def _handle(self, req: web.Request) -> web.StreamResponse:
        self.counts[f"{req.method} {req.path}"] += 1
        headers = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession(auto_decompress=False) as s, \
                s.request(req.method, f"http://{self.upstream}{req.path_qs}", headers=headers,
                          data=await req.read(), allow_redirects=False) as up:
            resp = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items() if k.lower() not in ("transfer-encoding", "connection")})
            await resp.prepare(req)
            sent = 0
            async for chunk in up.content.iter_chunked(64 * 1024):
                if self.stall_blobs and "/blobs/" in req.path and sent + len(chunk) > self.stall_after:
                    self.stalled.set()
                    assert self._release is not None
                    await self._release.wait()
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp

    def blob_gets(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if k.startswith("GET ") and "/blobs/" in k}

    def stall(self, after: int = 64 * 1024) -> None:
        """From now on, hold every blob body after ``after`` bytes until ``release()``."""
        self.stall_after = after
        self.stalled.clear()
        if self._loop is not None and self._release is not None:
            asyncio.run_coroutine_threadsafe(self._clear(), self._loop).result(5)
        self.stall_blobs = True

    async def _clear(self) -> None:
        assert self._release is not None
        self._release.clear()

    def release(self) -> None:
        """Let stalled transfers continue (and stop stalling new ones)."""
        self.stall_blobs = False
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def stop(self) -> None:
        self.release()
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


def _put_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def index_layout(src: ImageLayout, dest: Path, tag: str = "multi") -> tuple[ImageLayout, dict[str, str]]:
    """Copy ``src`` into ``dest`` as a multi-platform index: amd64 (the real image) first in the
    list only by chance of order, arm64 and arm/v7 siblings with distinct configs. Returns the layout
    and {platform: manifest digest}."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src.path, dest)
    blobs = dest / "blobs" / "sha256"
    man_digest = src.manifest_digest()
    man = json.loads((blobs / man_digest.split(":")[1]).read_bytes())
    config = json.loads((blobs / man["config"]["digest"].split(":")[1]).read_bytes())
    entries, digests = [], {}
    for arch, variant in (("arm64", ""), ("amd64", ""), ("arm", "v7")):
        if arch == "amd64":
            m_desc = {"digest": man_digest, "size": (blobs / man_digest.split(":")[1]).stat().st_size}
        else:
            cfg = _put_blob(dest, json.dumps({**config, "architecture": arch, "variant": variant}).encode())
            other = {**man, "config": {**man["config"], **cfg}}
            m_desc = _put_blob(dest, json.dumps(other).encode())
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **m_desc, "platform": platform})
        digests["/".join(filter(None, ("linux", arch, variant)))] = m_desc["digest"]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    idx = _put_blob(dest, json.dumps(index).encode())
    top = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **idx,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(top))
    digests["index"] = idx["digest"]
    return ImageLayout(src.name, tag, dest), digests


def with_random_layer(src: ImageLayout, dest: Path, size: int = 512 * 1024, tag: str = "unique") -> ImageLayout:
    """Copy ``src`` with one more gzip layer of ``size`` random bytes: blobs no containerd namespace
    has yet (containerd's shared content store would otherwise skip the download entirely)."""
    import gzip
    import io
    import os
    import tarfile

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src.path, dest)
    blobs = dest / "blobs" / "sha256"
    man = json.loads((blobs / src.manifest_digest().split(":")[1]).read_bytes())
    config = json.loads((blobs / man["config"]["digest"].split(":")[1]).read_bytes())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mtime = size, 1_700_000_000
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    layer = _put_blob(dest, gzip.compress(raw.getvalue(), mtime=0))
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    cfg = _put_blob(dest, json.dumps(config).encode())
    man["config"] = {**man["config"], **cfg}
    man["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer})
    m = _put_blob(dest, json.dumps(man).encode())
    top = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(top))
    return ImageLayout(src.name, tag, dest)
