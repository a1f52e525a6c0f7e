"""Registry authentication: the CRI AuthConfig, Basic, and the Bearer token challenge flow.

A registry answers 401 with ``WWW-Authenticate``; for ``Basic`` we send the user's credentials, for
``Bearer realm=…,service=…,scope=…`` we ask the realm for a token (anonymously when there are no
credentials, with Basic credentials, or with an OAuth2 refresh token when the AuthConfig carries an
identity token) and cache it per (realm, service, scope, credentials) until it expires, so a pull of
many blobs costs one token request.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from criproxy import errors
from criproxy.state.image import TOKEN_EARLY_EXPIRY as TOKEN_EARLY_EXPIRY
from criproxy.state.image import TokenCache as TokenCache  # re-exported: images.auth.TokenCache still names it

_PARAM = re.compile(r'\s*([a-zA-Z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')
DEFAULT_TOKEN_TTL = 60.0


@dataclass(frozen=True)
class Credentials:
    """What the user gave in the CRI AuthConfig, decoded."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_host: str = ""           # host[:port] from AuthConfig.server_address; "" = any host

    def for_host(self, host: str) -> Credentials:
        """These credentials if they may go to ``host``, else none.

        As containerd's CRI does: an AuthConfig naming a server is for that server only, so a mirror
        from hosts.toml never receives credentials meant for the upstream registry.
        """
        if not self.server_host or _same_host(self.server_host, host):
            return self
        return Credentials()

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def key(self) -> str:
        """A cache key that distinguishes credentials without keeping them readable."""
        raw = "\0".join((self.username, self.password, self.identity_token, self.registry_token))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def from_auth_config(auth: Any) -> Credentials:
    """Decode a CRI ``AuthConfig`` (username/password, base64 ``auth``, identity or registry token)."""
    if auth is None:
        return Credentials()
    user, password = auth.username, auth.password
    if auth.auth and not user:
        try:
            user, sep, password = base64.b64decode(auth.auth, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise errors.InvalidArgument("auth.auth is not base64 of 'user:password'") from None
    return Credentials(username=user, password=password, identity_token=auth.identity_token,
                       registry_token=auth.registry_token, server_host=_server_host(auth.server_address))


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _server_host(address: str) -> str:
    """``https://index.docker.io/v1/`` → ``index.docker.io``; ``host:5000`` stays as it is."""
    address = address.strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    return address.split("/", 1)[0].lower()


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or (a in _DOCKER_HUB and b in _DOCKER_HUB)


@dataclass(frozen=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge."""

    scheme: str                 # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (possibly several challenges in one header)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme, rest = m.group(1).lower(), rest[m.end():]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end():]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def token_from_response(doc: Any) -> tuple[str, float]:
    """(token, ttl seconds) from a token endpoint's JSON answer (``token`` or ``access_token``)."""
    if not isinstance(doc, dict):
        raise errors.Unauthenticated("token service answered something that is not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise errors.Unauthenticated("token service answered without a token")
    try:
        ttl = float(doc.get("expires_in") or DEFAULT_TOKEN_TTL)
    except (TypeError, ValueError):
        ttl = DEFAULT_TOKEN_TTL
    return token, ttl
