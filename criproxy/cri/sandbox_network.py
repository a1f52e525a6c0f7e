"""Setting a pod's network up and tearing it down: pinned netns, CNI ADD/DEL, the on-disk record.

The record (``network.json`` in the sandbox dir) is written before ADD and after it, so DEL can run
after any crash with the same conflist and the cached result; teardown marks it torn down only when
DEL succeeded, which is how StopPodSandbox keeps retrying DEL until it works.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from criproxy import errors, trace
from criproxy.app import App
from criproxy.network import cni, cniconf, netns, pod
from criproxy.state.sandbox import SandboxRecord

log = logging.getLogger("criproxy.sandbox.network")


def current_network(app: App) -> cniconf.NetworkConfig:
    """The conflist pods get now; FailedPrecondition (NetworkReady's reason) when there is none."""
    try:
        return cniconf.find(app.config.cni_conf_dir)
    except cniconf.NoNetwork as e:
        raise errors.FailedPrecondition(f"network not ready: {e}") from None


async def create_netns(app: App, rec: SandboxRecord) -> str:
    """Create and pin the netns at ``rec.netns_path`` (chosen beforehand), or at a fresh path."""
    try:
        rec.netns_path = await netns.create(app.config.netns_dir, rec.netns_path)
    except netns.NetnsError as e:
        raise errors.Internal(str(e)) from None
    return rec.netns_path


def plan(app: App, rec: SandboxRecord, net: cniconf.NetworkConfig) -> pod.NetworkState:
    """Write network.json (netns path, conflist, CNI inputs) before the netns even exists, so a crash
    at any later point leaves enough for recovery to unpin it and run DEL."""
    assert rec.dir is not None
    att = pod.attachment(rec.id, rec.netns_path, rec.config, app.pod_cidr)
    st = pod.state_for(rec.netns_path, net.raw, att)
    pod.save(rec.dir, st)
    return st


async def add(app: App, rec: SandboxRecord, net: cniconf.NetworkConfig, st: pod.NetworkState) -> None:
    """CNI ADD into the pod's netns; on failure DEL runs at once (ADD may have stopped half way)."""
    assert rec.dir is not None
    att = st.to_attachment()
    try:
        st.result = await cni.add(net, att, app.config.cni_bin_dirs)
    except BaseException as e:
        with contextlib.suppress(cni.CniError):
            await cni.delete(net, att, app.config.cni_bin_dirs, None)
        if isinstance(e, cni.CniError):
            raise errors.Unknown(f"failed to set up pod network: {e}") from None
        raise
    pod.save(rec.dir, st)
    rec.cni_result = st.result
    ips = cni.pod_ips(st.result, att.ifname)
    rec.ip, rec.additional_ips = (ips[0], ips[1:]) if ips else ("", [])
    trace.note(f"CNI ADD {net.name}: {ips}")


DelInputs = tuple[cniconf.NetworkConfig, cni.Attachment, dict[str, Any] | None]


def _del_inputs(app: App, rec: SandboxRecord, st: pod.NetworkState | None) -> DelInputs | None:
    """What DEL runs with: the conflist and inputs ADD used (network.json), else today's network;
    None when there is neither (then only the netns can be cleaned up)."""
    if st is not None:
        net = cniconf.parse_dict(st.conflist, source=str(rec.dir))
        return net, st.to_attachment(), st.result or rec.cni_result
    try:
        net = current_network(app)
    except errors.FailedPrecondition as e:
        log.warning("sandbox %s: no network.json and %s; only unpinning its netns", rec.id, e)
        return None
    return net, pod.attachment(rec.id, rec.netns_path, rec.config, app.pod_cidr), rec.cni_result


async def teardown(app: App, rec: SandboxRecord) -> None:
    """CNI DEL (with the conflist and result ADD used) then unpin the netns; remembered once done."""
    if rec.network_torn_down or rec.host_network:
        return
    st = pod.load(rec.dir) if rec.dir else None
    inputs = None if st is not None and st.torn_down else _del_inputs(app, rec, st)
    if inputs is not None:
        try:
            await cni.delete(inputs[0], inputs[1], app.config.cni_bin_dirs, inputs[2])
        except cni.CniError as e:
            raise errors.Unknown(f"failed to tear down pod network of {rec.id}: {e}") from None
    netns.remove(rec.netns_path)
    rec.network_torn_down = True
    if st is not None and not st.torn_down and rec.dir is not None and rec.dir.exists():
        st.torn_down = True
        pod.save(rec.dir, st)
