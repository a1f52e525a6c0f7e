"""The registry client: OCI distribution over aiohttp, with mirrors, auth and clear errors.

One ``Registry`` serves one pull of one repository. It tries the hosts from ``hosts.toml`` in order
(mirrors first, for the capabilities they have), answers a 401 by following the registry's
challenge once, and turns every HTTP or connection failure into an error class a person can act on:
unknown image → NotFound, refused credentials → Unauthenticated, forbidden → PermissionDenied,
registry unreachable or failing → Unavailable. aiohttp's exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import aiohttp

from criproxy import errors
from criproxy.app import App
from criproxy.images import auth, hosts
from criproxy.images.descriptor import Descriptor
from criproxy.images.manifest import MAX_CONFIG, MAX_MANIFEST
from criproxy.images.reference import Reference

log = logging.getLogger("criproxy.images.registry")

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join((*MANIFEST_TYPES, "*/*;q=0.8"))
CONNECTIONS_PER_HOST = 6


def session(app: App) -> aiohttp.ClientSession:
    """The process-wide HTTP session: pooled connections, a bounded number per registry host."""
    s = app.images.http
    if s is None or s.closed:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_HOST, ttl_dns_cache=60)
        s = app.images.http = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                    timeout=aiohttp.ClientTimeout(total=None, connect=30))
    return s


def _status_error(status: int, what: str, host: str) -> errors.CriError:
    if status == 401:
        return errors.Unauthenticated(f"{what}: registry {host} refused the credentials (401 Unauthorized)")
    if status == 403:
        return errors.PermissionDenied(f"{what}: registry {host} denied access (403 Forbidden)")
    if status == 404:
        return errors.NotFound(f"{what}: not found on registry {host}")
    if status == 429 or status >= 500:
        return errors.Unavailable(f"{what}: registry {host} answered HTTP {status}; try again later")
    return errors.FailedPrecondition(f"{what}: registry {host} answered HTTP {status}")


def _rank(err: errors.CriError) -> int:
    """Which of several hosts' errors to report: the most specific one."""
    order = (errors.Unauthenticated, errors.PermissionDenied, errors.NotFound, errors.FailedPrecondition)
    for i, cls in enumerate(order):
        if isinstance(err, cls):
            return i
    return len(order)


class Registry:
    """Manifests and blobs of one repository, through the configured hosts of its registry."""

    def __init__(self, app: App, ref: Reference, creds: auth.Credentials) -> None:
        self.ref = ref
        self.creds = creds
        self.http = session(app)
        self.tokens = app.images.tokens
        self.hosts = hosts.hosts_for(app.config.registry_config_path, ref.domain)
        self.scope = f"repository:{ref.path}:pull"
        self._authz: dict[str, str] = {}
        self._authz = {h.host: f"Bearer {c.registry_token}" for h in self.hosts
                       if (c := creds.for_host(h.host)).registry_token}
        self._token_lock = asyncio.Lock()

    def _url(self, host: hosts.RegistryHost, kind: str, ref: str) -> str:
        return f"{host.base}/{self.ref.path}/{kind}/{ref}"

    async def _authorize(self, host: hosts.RegistryHost, header: str, rejected: str = "") -> str:
        """The Authorization value answering this host's 401 challenge (``rejected``: what we sent)."""
        challenges = auth.parse_challenges(header)
        creds = self.creds.for_host(host.host)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        if bearer is not None:
            if creds.registry_token:
                raise errors.Unauthenticated(f"registry {host.host} refused the registry token")
            return "Bearer " + await self._token(bearer.params, creds, rejected.removeprefix("Bearer "))
        if any(c.scheme == "basic" for c in challenges):
            if not (creds.username or creds.password):
                raise errors.Unauthenticated(f"registry {host.host} requires credentials (Basic auth) "
                                             f"to pull {self.ref}")
            return creds.basic()
        raise errors.Unauthenticated(f"registry {host.host} asked for authentication we do not speak: {header!r}")

    async def _token(self, params: dict[str, str], creds: auth.Credentials, rejected: str = "") -> str:
        """A Bearer token for our scope from the challenge's realm, cached until it expires (or until
        the registry rejects it, e.g. after a registry restart with a new key)."""
        key = (params["realm"], params.get("service", ""), self.scope, creds.key())
        async with self._token_lock:
            cached = self.tokens.get(key)
            if cached is not None and cached != rejected:
                return cached
            token, ttl = await self._fetch_token(params["realm"], params.get("service", ""), creds)
            self.tokens.put(key, token, ttl)
            return token

    async def _fetch_token(self, realm: str, service: str, creds: auth.Credentials) -> tuple[str, float]:
        query = {"scope": self.scope, **({"service": service} if service else {})}
        try:
            if creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "criproxy", **query}
                resp = await self.http.post(realm, data=form)
            else:
                headers = {} if creds.empty else {"Authorization": creds.basic()}
                resp = await self.http.get(f"{realm}?{urlencode(query)}", headers=headers)
            async with resp:
                if resp.status in (401, 403):
                    raise errors.Unauthenticated(f"token service {realm} refused the credentials "
                                                 f"(HTTP {resp.status}) for {self.scope}")
                if resp.status != 200:
                    raise errors.Unavailable(f"token service {realm} answered HTTP {resp.status}")
                return auth.token_from_response(await resp.json(content_type=None))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            raise errors.Unavailable(f"token service {realm} unreachable: {e}") from None

    async def _request(self, host: hosts.RegistryHost, url: str, headers: dict[str, str],
                       what: str) -> aiohttp.ClientResponse:
        """GET with this host's auth; a 401 is answered once by following its challenge."""
        for attempt in (0, 1):
            h = {**host.headers, **headers}
            if host.host in self._authz:
                h["Authorization"] = self._authz[host.host]
            try:
                resp = await self.http.get(url, headers=h, ssl=host.ssl_context())
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise errors.Unavailable(f"{what}: registry {host.host} unreachable: {e}") from None
            if resp.status != 401 or attempt == 1:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            self._authz[host.host] = await self._authorize(host, challenge, h.get("Authorization", ""))
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _get(self, kind: str, ref: str, capability: str, headers: dict[str, str],
                   what: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The first host that answers 200 for ``/<kind>/<ref>``; the best error if none does."""
        failures: list[errors.CriError] = []
        for host in self.hosts:
            if capability not in host.capabilities:
                continue
            try:
                resp = await self._request(host, self._url(host, kind, ref), headers, what)
            except errors.CriError as e:
                failures.append(e)
                continue
            if resp.status == 200:
                async with resp:
                    yield resp
                return
            resp.release()
            failures.append(_status_error(resp.status, what, host.host))
        if not failures:
            raise errors.FailedPrecondition(f"{what}: no registry host of {self.ref.domain} may {capability}")
        raise min(failures, key=_rank)

    async def manifest(self, ref: str, resolve: bool) -> tuple[Descriptor, bytes]:
        """Fetch a manifest or index by tag (``resolve``) or digest, bounded and digest-checked."""
        what = f"manifest {self.ref.repository}:{ref}" if resolve else f"manifest {self.ref.repository}@{ref}"
        async with self._get("manifests", ref, "resolve" if resolve else "pull", {"Accept": ACCEPT}, what) as resp:
            body = await _read_bounded(resp, MAX_MANIFEST, what)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            header = resp.headers.get("Docker-Content-Digest", "")
            media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not resolve and digest != ref:
            raise errors.FailedPrecondition(f"{what}: registry sent content with digest {digest}")
        if resolve and header.startswith("sha256:") and header != digest:
            raise errors.FailedPrecondition(f"{what}: Docker-Content-Digest {header} != content digest {digest}")
        return Descriptor(_media_type(media, body), digest, len(body)), body

    async def small_blob(self, desc: Descriptor, limit: int = MAX_CONFIG) -> bytes:
        """A config blob, read whole (bounded) and checked against its descriptor."""
        what = f"blob {desc.digest} of {self.ref.repository}"
        if desc.size > limit:
            raise errors.ResourceExhausted(f"{what} is {desc.size} bytes, over the {limit} limit")
        async with self._get("blobs", desc.digest, "pull", {}, what) as resp:
            body = await _read_bounded(resp, limit, what)
        if len(body) != desc.size or "sha256:" + hashlib.sha256(body).hexdigest() != desc.digest:
            raise errors.FailedPrecondition(f"{what}: content does not match its digest/size")
        return body

    @asynccontextmanager
    async def blob(self, desc: Descriptor) -> AsyncIterator[aiohttp.StreamReader]:
        """Open a blob for streaming; the caller reads and verifies it."""
        what = f"blob {desc.digest} of {self.ref.repository}"
        async with self._get("blobs", desc.digest, "pull", {}, what) as resp:
            yield resp.content


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise errors.ResourceExhausted(f"{what} is {resp.content_length} bytes, over the {limit} limit")
    try:
        body = await resp.content.read(limit + 1)
        while len(body) <= limit:
            more = await resp.content.read(limit + 1 - len(body))
            if not more:
                break
            body += more
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise errors.Unavailable(f"{what}: transfer failed: {e}") from None
    if len(body) > limit:
        raise errors.ResourceExhausted(f"{what} is over the {limit} byte limit")
    return body


def _media_type(header: str, body: bytes) -> str:
    """The manifest's media type: the header when it is one we know, else the body's own field."""
    if header in MANIFEST_TYPES:
        return header
    import json

    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise errors.FailedPrecondition("registry sent a manifest that is not JSON") from None
    mt = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(mt, str) and mt in MANIFEST_TYPES:
        return mt
    if isinstance(doc, dict) and "manifests" in doc:
        return MANIFEST_TYPES[0]
    if isinstance(doc, dict) and "config" in doc:
        return MANIFEST_TYPES[2]
    raise errors.FailedPrecondition(f"unsupported manifest media type {header or mt!r} "
                                    "(schema1 manifests are not supported)")
