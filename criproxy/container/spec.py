"""Compose a container's OCI spec from the CRI config, the image and the sandbox (not an RPC).

Reads the few host facts the options need (devices, mount propagation, capability set, seccomp
file) and lists the decisions in the order they override each other: defaults, process, user,
namespaces, mounts, security (privileged last, because it clears confinement), resources.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from criproxy import errors
from criproxy.app import App
from criproxy.oci import apparmor, basespec, cdi, cgroups, hostfacts
from criproxy.oci import container as oc
from criproxy.oci.spec import (
    Option,
    Spec,
    build_spec,
    clamp_oom_score_adj,
    with_annotations,
    with_cgroups_path,
    with_env,
)
from criproxy.oci.volumes import volume_mounts
from criproxy.protos import cri
from criproxy.state.image import LocalImage
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import container as t
from criproxy.translate.sandbox import systemd_cgroup


@dataclass
class SpecResult:
    spec: Spec
    identity: oc.Identity
    stop_signal: str


def stop_signal(config: cri.ContainerConfig, image_config: dict[str, Any]) -> str:
    """The CRI field, else the image's STOPSIGNAL, else SIGTERM."""
    return t.cri_signal_name(config.stop_signal) or str(image_config.get("StopSignal") or "") or "SIGTERM"


def _hostname(sandbox: SandboxRecord) -> str:
    import socket

    if sandbox.host_network:
        return socket.gethostname()
    return sandbox.config.hostname or sandbox.config.metadata.name


def _pod_files(sandbox: SandboxRecord) -> dict[str, str | None]:
    def ok(p: Path | None) -> str | None:
        return str(p) if p is not None and p.exists() else None
    return {"/etc/hostname": ok(sandbox.hostname_path), "/etc/hosts": ok(sandbox.hosts_path),
            "/etc/resolv.conf": ok(sandbox.resolv_conf_path), "/dev/shm": ok(sandbox.shm_path)}


def _mounts(app: App, config: cri.ContainerConfig, sandbox: SandboxRecord,
            image_hosts: dict[str, str]) -> list[dict[str, Any]]:
    sc = config.linux.security_context
    rro = app.rro_support.get(sandbox.runtime_handler, False)
    out = []
    for m in config.mounts:
        oc.check_recursive_read_only(m, rro)
        if m.container_path in image_hosts:       # an image volume, mounted by images/imagevolume.py
            out.append(oc.cri_mount(m, image_hosts[m.container_path], rro))
            continue
        host = hostfacts.prepare_host_path(m)
        hostfacts.check_propagation(m, host)
        out.append(oc.cri_mount(m, host, rro))
    taken = {m["destination"] for m in out}
    return oc.pod_file_mounts(_pod_files(sandbox), taken, sc.readonly_rootfs) + out


def _security(config: cri.ContainerConfig, sandbox: SandboxRecord, apparmor_profile: str) -> list[Option]:
    sc = config.linux.security_context
    all_caps = hostfacts.host_capabilities()
    if sc.privileged:
        if not sandbox.config.linux.security_context.privileged:
            raise errors.InvalidArgument("privileged container in a pod sandbox that is not privileged")
        return [oc.with_privileged(all_caps, hostfacts.host_devices()), apparmor.with_apparmor(apparmor_profile),
                oc.with_no_new_privs(sc.no_new_privs), oc.with_rootfs_readonly(sc.readonly_rootfs)]
    caps = oc.capability_set(sc.capabilities, all_caps)
    ambient = [oc.cap_name(c) for c in sc.capabilities.add_ambient_capabilities]
    return [oc.with_capabilities(caps, ambient), oc.with_paths(list(sc.masked_paths), list(sc.readonly_paths)),
            oc.with_cgroup_namespace(hostfacts.cgroup_unified()),
            oc.with_seccomp(hostfacts.seccomp_profile(sc, caps)),
            apparmor.with_apparmor(apparmor_profile),
            oc.with_no_new_privs(sc.no_new_privs), oc.with_rootfs_readonly(sc.readonly_rootfs)]


async def container_apparmor(app: App, config: cri.ContainerConfig) -> str:
    """The container's AppArmor profile ("" = none), decided from the request (oci/apparmor.py) and
    made sure of on the host: a Localhost profile must be loaded, criproxy's default one is loaded
    when missing. Called before anything is created, so a refused profile leaves nothing behind."""
    sc = config.linux.security_context
    plan = apparmor.plan(apparmor.requested(sc), sc.privileged, apparmor.host_support())
    if plan.default:
        await apparmor.ensure_default(app.apparmor_load, app.config.containerd_address)
    elif plan.profile and not await asyncio.to_thread(apparmor.is_loaded, plan.profile):
        raise errors.InvalidArgument(f"AppArmor profile {plan.profile!r} is not loaded (the kernel's list of "
                                     "loaded profiles does not have it): load it with apparmor_parser first")
    return plan.profile


def _target_pid(app: App, opts: cri.NamespaceOption) -> int:
    if opts.pid != cri.TARGET:
        return 0
    target = app.containers.find(opts.target_id)
    return target.status.pid if target is not None and target.running else 0


def container_spec(app: App, container_id: str, config: cri.ContainerConfig, sandbox: SandboxRecord,
                   image: LocalImage, files: oc.UserFiles,
                   volumes: list[tuple[str, str]] | None = None, apparmor_profile: str = "",
                   image_hosts: dict[str, str] | None = None) -> SpecResult:
    """``volumes``: (container path, host dir) of the image's seeded VOLUMEs (see oci/volumes.py);
    ``apparmor_profile``: what ``container_apparmor`` decided ("" = none); ``image_hosts``: host path
    by container path of the image mounts (images/imagevolume.py)."""
    img = image.config.get("config") or {}
    sc = config.linux.security_context
    ident = oc.resolve_identity(sc, str(img.get("User") or ""), files)
    opts = sc.namespace_options
    devices, rules = hostfacts.cri_devices(config.devices)
    resources = config.linux.resources
    spec = build_spec(
        basespec.start_spec(app.base_specs.get(sandbox.runtime_handler)),
        oc.with_process(oc.process_args(config, img), config.working_dir or str(img.get("WorkingDir") or ""),
                        config.tty),
        with_env([f"HOSTNAME={_hostname(sandbox)}"], list(img.get("Env") or []), oc.config_env(config)),
        oc.with_identity(ident),
        oc.with_pod_namespaces(opts, sandbox.pid, _target_pid(app, opts)),
        oc.with_container_mounts(_mounts(app, config, sandbox, image_hosts or {}) + volume_mounts(volumes or [])),
        *_security(config, sandbox, apparmor_profile),
        oc.with_devices(devices, rules),
        oc.with_resources(resources, clamp_oom_score_adj(int(resources.oom_score_adj), app.oom_score_floor)
                          if config.linux.HasField("resources") else None,
                          hostfacts.swap_supported(), hostfacts.hugetlb_supported()),
        cdi.cdi_option(app.config.cdi_spec_dirs, [d.name for d in config.CDI_devices], config.annotations),
        with_cgroups_path(cgroups.cgroups_path(sandbox.config.linux.cgroup_parent, container_id, cgroups.default_parent(
            app.ctrd.namespace, systemd_cgroup(app.config, sandbox.runtime_handler)))),
        with_annotations(oc.container_annotations(sandbox.id, config, sandbox.config, config.image.image)),
    )
    return SpecResult(spec, ident, stop_signal(config, img))
