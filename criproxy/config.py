"""criproxy's settings: a TOML file, ``CRIPROXY_*`` environment variables and command-line flags.

Precedence is flags, then environment, then file, then defaults, as an operator expects: the unit
file's flags are the last word, the environment overrides a shared config file. pydantic validates
every source alike, so a bad value anywhere is one clear message naming the setting.
"""

from __future__ import annotations

import contextvars
import functools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("criproxy_config_file", default=None)


class RuntimeHandler(BaseModel):
    """A CRI runtime handler (``RunPodSandboxRequest.runtime_handler``) and how containerd runs it."""

    runtime_type: str = "io.containerd.runc.v2"
    binary_name: str = ""
    root: str = ""
    systemd_cgroup: bool | None = None
    # A JSON OCI spec this handler's containers start from instead of the default (containerd's
    # base_runtime_spec); read once at start (oci/basespec.py).
    base_runtime_spec: str = ""
    # The snapshotter of this handler's pods (their pause and containers' root filesystems, and
    # PullImage for a pod of this handler); "" = the global one.
    snapshotter: str = ""


def _default_handlers() -> dict[str, RuntimeHandler]:
    return {"runc": RuntimeHandler()}


def _default_registry_config_path() -> Path:
    own = Path("/etc/criproxy/certs.d")
    theirs = Path("/etc/containerd/certs.d")
    return theirs if not own.exists() and theirs.exists() else own


class Config(BaseSettings):
    """Every setting criproxy has, with the defaults a host with a system containerd wants."""

    model_config = SettingsConfigDict(env_prefix="CRIPROXY_", extra="forbid")

    listen: Path = Path("/run/criproxy/criproxy.sock")
    listen_mode: int = 0o660
    containerd_address: Path = Path("/run/containerd/containerd.sock")
    namespace: str = "criproxy"
    root: Path = Path("/var/lib/criproxy")
    state: Path = Path("/run/criproxy")
    managed_containerd: Literal["auto", "always", "never"] = "auto"
    containerd_binary: str = "containerd"
    snapshotter: str = "overlayfs"
    cgroup_driver: Literal["auto", "cgroupfs", "systemd"] = "auto"
    runtime_handlers: dict[str, RuntimeHandler] = Field(default_factory=_default_handlers)
    default_runtime_handler: str = "runc"
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    cni_bin_dirs: list[Path] = Field(default_factory=lambda: [Path("/opt/cni/bin"), Path("/usr/lib/cni")])
    netns_dir: Path = Path("/var/run/netns")
    # CDI spec file directories, later ones overriding earlier ones (containerd's cdi_spec_dirs); empty: no CDI.
    cdi_spec_dirs: list[Path] = Field(default_factory=lambda: [Path("/etc/cdi"), Path("/var/run/cdi")])
    # Raise every oom_score_adj below criproxy's own to its own (containerd's restrict_oom_score_adj);
    # it happens anyway when criproxy lacks CAP_SYS_RESOURCE.
    restrict_oom_score_adj: bool = False
    # containerd 2.x's pod sysctl defaults (pods with their own network namespace): any port may be
    # bound (ip_unprivileged_port_start=0) and any group may ping (ping_group_range covers all groups).
    enable_unprivileged_ports: bool = True
    enable_unprivileged_icmp: bool = True
    sandbox_shm_size: int = 64 * 1024 * 1024
    registry_config_path: Path = Field(default_factory=_default_registry_config_path)
    pause_image: str = "registry.k8s.io/pause:3.9"
    pull_progress_timeout: float = 60.0
    # Who fetches and unpacks a pulled image: containerd's Transfer service (2.x only) or criproxy's
    # own registry client; auto picks Transfer where containerd has it (benchmarks/README.md).
    pull_method: Literal["auto", "own", "transfer"] = "auto"
    streaming_address: str = "127.0.0.1:0"   # host:port of the exec/attach/port-forward server
    streaming_token_ttl: float = 60.0          # seconds an Exec/Attach/PortForward URL stays valid
    streaming_max_tokens: int = 1000           # URLs outstanding at once (kubelet's limit too)
    streaming_idle_timeout: float = 4 * 3600   # a session with no traffic this long is closed; 0: never
    debug_socket: Path | None = None  # metrics and traces over HTTP; default <state>/debug.sock
    trace: bool = True                # record each CRI call's containerd calls (the translation trace)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    containerd_call_timeout: float = Field(default=30.0, gt=0)  # deadline of a containerd call (slow ones: more)
    stop_timeout: float = Field(default=60.0, gt=0)   # one attempt at a pod/container stop or remove
    shutdown_grace: float = 10.0
    # NRI (docs/nri.md): plugins connect to nri_socket (or are started from nri_plugin_dir) and see pod
    # and container events. Off by default in criproxy (containerd 2.x has it on): the socket is
    # machine-wide and parts of NRI are not built yet (docs/nri.md says which).
    nri_enable: bool = False
    nri_socket: Path = Path("/var/run/nri/nri.sock")
    nri_plugin_dir: Path = Path("/opt/nri/plugins")
    nri_plugin_config_dir: Path = Path("/etc/nri/conf.d")
    nri_plugin_registration_timeout: float = Field(default=5.0, gt=0)   # seconds (containerd: 5s)
    nri_plugin_request_timeout: float = Field(default=2.0, gt=0)        # seconds per plugin call (containerd: 2s)
    startup_timeout: float = 10.0

    @field_validator("listen_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: Any) -> Any:
        """A mode given as text (flag, env) is octal as chmod reads it: ``0660`` is rw-rw----, not
        decimal 660; any mode outside 0..0777 (a decimal 660 in TOML, say) is refused."""
        if isinstance(value, str):
            value = int(value.strip().lower().removeprefix("0o") or "x", 8)
        if isinstance(value, int) and not 0 <= value <= 0o777:
            raise ValueError(f"{value:#o} is not a file mode: give it in octal, like 0660")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def containerd_dir(self) -> Path:
        """Where a managed containerd keeps its socket and state (under criproxy's own state)."""
        return self.state / "containerd"

    def resolved_cgroup_driver(self) -> Literal["cgroupfs", "systemd"]:
        """systemd only where systemd is PID 1 (its runtime dir exists), as kubelet's own check does."""
        if self.cgroup_driver != "auto":
            return self.cgroup_driver
        return "systemd" if systemd_booted() else "cgroupfs"


@functools.cache
def systemd_booted() -> bool:
    """Whether systemd is PID 1 (``sd_booted``'s test), looked at once: it does not change while we run,
    and every pod and container would otherwise stat it again on the event loop."""
    return Path("/run/systemd/system").is_dir()


# One line per setting for ``criproxy serve --help`` (set as each field's description below, so the
# CLI reads it from the model). A setting without a line here fails the unit tests.
FIELD_HELP: dict[str, str] = {
    "listen": "unix socket the CRI is served on (kubelet's --container-runtime-endpoint)",
    "listen_mode": "file mode of the CRI socket, octal as chmod reads it",
    "containerd_address": "containerd's gRPC socket",
    "namespace": "containerd namespace criproxy keeps its containers, images and leases in",
    "root": "persistent state directory (sandbox records, pod files)",
    "state": "runtime state directory (lock, debug socket, a managed containerd)",
    "managed_containerd": "start a private containerd: auto (when none answers), always, never",
    "containerd_binary": "containerd executable a managed containerd runs (1.x or 2.x; name or path)",
    "snapshotter": "containerd snapshotter for images and container root filesystems",
    "cgroup_driver": "cgroup driver for pods: auto (systemd when it is PID 1), cgroupfs, systemd",
    "runtime_handlers": "runtime handlers by name (config file only)",
    "default_runtime_handler": "handler for pods that name none",
    "cni_conf_dir": "directory of CNI network configs; the first one (by name) is used",
    "cni_bin_dirs": "directories searched for CNI plugins (repeat the flag for several)",
    "netns_dir": "where pod network namespaces are pinned",
    "cdi_spec_dirs": ("directories of CDI device spec files, a later one overriding an earlier one "
                      "(repeat the flag for several)"),
    "restrict_oom_score_adj": "raise any oom_score_adj below criproxy's own to its own",
    "enable_unprivileged_ports": "pods may bind any port (net.ipv4.ip_unprivileged_port_start=0)",
    "enable_unprivileged_icmp": "any group in a pod may ping (net.ipv4.ping_group_range)",
    "sandbox_shm_size": "size in bytes of each pod's /dev/shm",
    "registry_config_path": "containerd-style hosts directory (<host>/hosts.toml) for registries",
    "pause_image": "image of each pod's sandbox (pause) container",
    "pull_progress_timeout": "seconds a pull may go without progress before it is cancelled",
    "pull_method": "who pulls: auto (Transfer where containerd has it), own (criproxy's client), transfer",
    "streaming_address": "host:port of the exec/attach/port-forward server",
    "streaming_token_ttl": "seconds an Exec/Attach/PortForward URL stays valid",
    "streaming_max_tokens": "streaming URLs outstanding at once",
    "streaming_idle_timeout": "seconds a streaming session may stay silent before it is closed (0: never)",
    "debug_socket": "unix socket for metrics and traces over HTTP (default <state>/debug.sock)",
    "trace": "record the containerd calls each CRI call makes (debug socket /traces, criproxy trace/ui)",
    "log_level": "least severe log level written",
    "log_format": "log line format",
    "containerd_call_timeout": "seconds a containerd call may take (slow calls get a multiple)",
    "stop_timeout": "seconds one attempt at stopping or removing a pod or container may take",
    "shutdown_grace": "seconds in-flight calls get to finish on SIGTERM",
    "startup_timeout": "seconds to wait for containerd to answer at start",
    "nri_enable": "listen for NRI plugins on --nri-socket (docs/nri.md)",
    "nri_socket": "unix socket NRI plugins connect to (mode 0600)",
    "nri_plugin_dir": "NRI plugins criproxy starts itself: executables named by a two digit index, a dash and a name",
    "nri_plugin_config_dir": "config files of the plugins criproxy starts (index, dash, name .conf, else name .conf)",
    "nri_plugin_registration_timeout": "seconds a connected NRI plugin has to register",
    "nri_plugin_request_timeout": "seconds an NRI plugin has to answer one call before it is disconnected",
}
for _name, _field in Config.model_fields.items():
    _field.description = FIELD_HELP.get(_name)


class ConfigError(Exception):
    """A config problem, already phrased as the one line the operator should read."""


def load(config_file: Path | None, flags: dict[str, Any]) -> Config:
    """Build the settings from file, env and the flags that were given (None means not given)."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        try:
            tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {config_file} is not valid TOML: {e}") from None
    token = _config_file.set(config_file)
    try:
        from pydantic import ValidationError

        try:
            return Config(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "config"
            raise ConfigError(f"invalid setting {where}: {first['msg']} (check the config file, "
                              f"CRIPROXY_{where.upper()} and --{where.replace('_', '-')})") from None
    finally:
        _config_file.reset(token)
