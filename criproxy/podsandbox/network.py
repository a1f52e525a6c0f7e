"""Setting a pod's network up and tearing it down: pinned netns, CNI ADD/DEL, the on-disk record.

A pod gets two networks, as in containerd's CRI: the conflist's (interface ``eth0``, the pod's IPs)
and the loopback network (``cni.LOOPBACK``, interface ``lo``), which brings ``lo`` up whatever the
user's conflist holds — containers of one pod talk over 127.0.0.1 and port-forward dials it. Both
ADDs run side by side (go-cni attaches networks concurrently); DEL runs loopback's then the
conflist's, every one even if another failed. A conflist that lists ``loopback`` itself is fine:
the plugin only sets ``lo`` up (or down) and does so again.

The record (``network.json`` in the sandbox dir) is written before ADD and after it, so DEL can run
after any crash with the same conflist and the cached result; teardown marks it torn down only when
DEL succeeded, which is how StopPodSandbox keeps retrying DEL until it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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


def loopback_attachment(att: cni.Attachment) -> cni.Attachment:
    """The loopback network's inputs: the pod's, on ``lo`` (its plugin declares no capabilities)."""
    return dataclasses.replace(att, ifname=cni.LOOPBACK_IFNAME)


async def add(app: App, rec: SandboxRecord, net: cniconf.NetworkConfig, st: pod.NetworkState) -> None:
    """CNI ADD of the conflist and of the loopback network, side by side, into the pod's netns; on
    any failure both are DEL'd at once (an ADD may have stopped half way)."""
    assert rec.dir is not None
    att = st.to_attachment()
    bins = app.config.cni_bin_dirs
    lo_att = loopback_attachment(att)
    try:
        outcome = await asyncio.gather(cni.add(net, att, bins), cni.add(cni.LOOPBACK, lo_att, bins),
                                       return_exceptions=True)
        failed = next((r for r in outcome if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
    except BaseException as e:
        for d_net, d_att in ((cni.LOOPBACK, lo_att), (net, att)):
            with contextlib.suppress(cni.CniError):
                await cni.delete(d_net, d_att, bins, None)
        if isinstance(e, cni.CniError):
            raise errors.Unknown(f"failed to set up pod network: {e}") from None
        raise
    assert isinstance(outcome[0], dict)
    st.result = outcome[0]
    pod.save(rec.dir, st)
    rec.cni_result = st.result
    ips = cni.pod_ips(st.result, att.ifname)
    rec.ip, rec.additional_ips = (ips[0], ips[1:]) if ips else ("", [])
    trace.note(f"CNI ADD {net.name}: {ips}")


DelInputs = tuple[cniconf.NetworkConfig, cni.Attachment, dict[str, Any] | None]


def _del_inputs(app: App, rec: SandboxRecord, st: pod.NetworkState | None) -> list[DelInputs]:
    """The DELs to run, in order: loopback's, then the conflist's with the inputs ADD used
    (network.json), else with today's network; only loopback's when there is no conflist at all."""
    if st is not None:
        net = cniconf.parse_dict(st.conflist, source=str(rec.dir))
        att = st.to_attachment()
        main: list[DelInputs] = [(net, att, st.result or rec.cni_result)]
        return ([(cni.LOOPBACK, loopback_attachment(att), None)] if st.loopback else []) + main
    att = pod.attachment(rec.id, rec.netns_path, rec.config, app.pod_cidr)
    inputs: list[DelInputs] = [(cni.LOOPBACK, loopback_attachment(att), None)]
    try:
        inputs.append((current_network(app), att, rec.cni_result))
    except errors.FailedPrecondition as e:
        log.warning("sandbox %s: no network.json and %s; DEL of the loopback network only", rec.id, e)
    return inputs


async def teardown(app: App, rec: SandboxRecord) -> None:
    """CNI DEL (with the conflist and result ADD used) then unpin the netns; remembered once done."""
    if rec.network_torn_down or rec.host_network:
        return
    st = pod.load(rec.dir) if rec.dir else None
    first: cni.CniError | None = None
    for net, att, cached in [] if st is not None and st.torn_down else _del_inputs(app, rec, st):
        try:
            await cni.delete(net, att, app.config.cni_bin_dirs, cached)
        except cni.CniError as e:
            first = first or e
    if first is not None:
        raise errors.Unknown(f"failed to tear down pod network of {rec.id}: {first}") from None
    netns.remove(rec.netns_path)
    rec.network_torn_down = True
    if st is not None and not st.torn_down and rec.dir is not None and rec.dir.exists():
        st.torn_down = True
        pod.save(rec.dir, st)
