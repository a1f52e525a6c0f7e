"""Registry host configuration in containerd's ``config_path`` layout (``<dir>/<host>/hosts.toml``).

Users already have these files for containerd, so criproxy reads the same ones with the same
meaning: ``server`` is the upstream, each ``[host."URL"]`` is a mirror tried first, in file order,
for the capabilities it lists; ``ca``, ``client``, ``skip_verify``, ``header`` and ``override_path``
apply per host. A registry on loopback without a file is spoken to over plain http, as containerd
1.6's own resolver does; every other host defaults to https.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from criproxy import errors

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
ALL_CAPS = frozenset({"pull", "resolve", "push"})


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint to try: ``{scheme}://{host}{path}/<repo>/manifests/<ref>``."""

    scheme: str
    host: str                       # host[:port]
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPS
    skip_verify: bool = False
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()   # (cert, key); key "" when the cert file holds both
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's ``ssl=`` wants for this host (True: system defaults)."""
        if self.scheme != "https":
            return True
        if not (self.skip_verify or self.ca or self.client):
            return True
        try:
            return _tls_context(self.ca, self.client, self.skip_verify)
        except OSError as e:     # missing or unreadable file, bad PEM (ssl.SSLError)
            files = ", ".join([*self.ca, *(c for pair in self.client for c in pair if c)])
            raise errors.FailedPrecondition(f"TLS files for registry {self.host} ({files}) cannot be "
                                            f"loaded: {e}") from None


@functools.lru_cache(maxsize=64)
def _tls_context(ca: tuple[str, ...], client: tuple[tuple[str, str], ...], skip_verify: bool) -> ssl.SSLContext:
    """One SSLContext per distinct TLS setting (loading CA files per request would cost milliseconds);
    hosts.toml is re-read for every pull, the files it names are read once per process."""
    ctx = ssl.create_default_context()
    for path in ca:
        ctx.load_verify_locations(cafile=path)
    for cert, key in client:
        ctx.load_cert_chain(cert, key or None)
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_server(domain: str) -> str:
    """The upstream URL for a registry host that has no ``server`` setting."""
    if domain == DOCKER_HUB:
        return DOCKER_HUB_SERVER
    return f"{'http' if is_loopback(domain) else 'https'}://{domain}"


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _abs(base: Path, p: str) -> str:
    return str(p if Path(p).is_absolute() else base / p)


def _clients(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in _list(value):
        if isinstance(item, list):
            out.append((_abs(base, str(item[0])), _abs(base, str(item[1])) if len(item) > 1 else ""))
        else:
            out.append((_abs(base, str(item)), ""))
    return tuple(out)


def _host_from(url: str, table: dict[str, Any], base: Path, caps: frozenset[str]) -> RegistryHost:
    """Build one RegistryHost from a URL and its TOML table (the file's top level or a [host.X])."""
    if "://" not in url:
        url = f"https://{url}"
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise errors.InvalidArgument(f"registry host config {base}: bad URL {url!r}")
    path = u.path.rstrip("/") or "/v2"
    if not table.get("override_path", False) and not path.endswith("/v2"):
        path += "/v2"
    if "capabilities" in table:
        caps = frozenset(str(c) for c in table["capabilities"])
    headers = {str(k): ", ".join(str(x) for x in _list(v)) for k, v in dict(table.get("header", {})).items()}
    return RegistryHost(scheme=u.scheme, host=u.netloc, path=path, capabilities=caps,
                        skip_verify=bool(table.get("skip_verify", False)),
                        ca=tuple(_abs(base, str(c)) for c in _list(table.get("ca"))),
                        client=_clients(table.get("client"), base), headers=headers)


def _host_dir(config_path: Path, domain: str) -> Path | None:
    for name in (domain, "_default"):
        d = config_path / name
        if d.is_dir():
            return d
    return None


def _docker_cert_files(d: Path) -> dict[str, Any]:
    """A host dir without hosts.toml: Docker's layout (``*.crt`` CAs, ``*.cert`` + ``*.key`` pairs)."""
    clients = [[str(c), str(c.with_suffix(".key"))] for c in sorted(d.glob("*.cert"))]
    return {"ca": [str(c) for c in sorted(d.glob("*.crt"))], "client": clients}


def hosts_for(config_path: Path | None, domain: str) -> list[RegistryHost]:
    """Endpoints for ``domain`` in the order to try them: mirrors from hosts.toml, then the server."""
    d = _host_dir(config_path, domain) if config_path else None
    if d is None:
        return [_host_from(default_server(domain), {}, Path("."), ALL_CAPS)]
    if not (d / "hosts.toml").is_file():
        return [_host_from(default_server(domain), _docker_cert_files(d), d, ALL_CAPS)]
    try:
        doc = tomllib.loads((d / "hosts.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise errors.InvalidArgument(f"registry host config {d / 'hosts.toml'}: {e}") from None
    server = str(doc.get("server", "")) or default_server(domain)
    try:
        out = [_host_from(url, dict(table), d, ALL_CAPS)
               for url, table in dict(doc.get("host", {})).items()]
        out.append(_host_from(server, doc, d, ALL_CAPS))
    except (TypeError, ValueError, IndexError, AttributeError) as e:   # valid TOML, wrong shape
        raise errors.InvalidArgument(f"registry host config {d / 'hosts.toml'}: malformed: "
                                     f"{type(e).__name__}: {e}") from None
    return out
