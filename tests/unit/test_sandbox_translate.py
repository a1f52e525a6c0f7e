"""Pure sandbox conversions: status, list items, filters, the metadata extension round trip."""

from __future__ import annotations

import json

import pytest

from criproxy.protos import cri
from criproxy.state.sandbox import SandboxRecord
from criproxy.translate import sandbox as t


def _rec(**kw: object) -> SandboxRecord:
    cfg = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="web", namespace="default", uid="u1", attempt=2),
                               labels={"app": "web", "tier": "front"}, annotations={"a": "b"})
    cfg.linux.security_context.namespace_options.pid = cri.CONTAINER
    rec = SandboxRecord(id="ab" * 32, name="web_default_u1_2", config=cfg, runtime_handler="runc",
                        created_at=123, state=cri.SANDBOX_READY, ip="10.1.0.5", additional_ips=["fd00::5"])
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def test_sandbox_name() -> None:
    meta = cri.PodSandboxMetadata(name="p", namespace="ns", uid="u", attempt=3)
    assert t.sandbox_name(meta) == "p_ns_u_3"


def test_to_cri_status() -> None:
    st = t.to_cri_status(_rec())
    assert st.id == "ab" * 32 and st.state == cri.SANDBOX_READY and st.created_at == 123
    assert st.network.ip == "10.1.0.5" and [i.ip for i in st.network.additional_ips] == ["fd00::5"]
    assert st.linux.namespaces.options.pid == cri.CONTAINER
    assert st.metadata.attempt == 2 and st.labels["app"] == "web" and st.runtime_handler == "runc"


def test_status_reports_no_ip_once_the_network_is_torn_down() -> None:
    rec = _rec(state=cri.SANDBOX_NOTREADY, network_torn_down=True)
    st = t.to_cri_status(rec)
    assert st.network.ip == "" and list(st.network.additional_ips) == []
    assert rec.ip == "10.1.0.5" and rec.additional_ips == ["fd00::5"]     # kept for the record
    assert t.to_cri_status(_rec(state=cri.SANDBOX_NOTREADY)).network.ip == "10.1.0.5"  # DEL still owed


def test_to_cri_item() -> None:
    item = t.to_cri_item(_rec(state=cri.SANDBOX_NOTREADY))
    assert item.state == cri.SANDBOX_NOTREADY and item.annotations == {"a": "b"}


@pytest.mark.parametrize(("flt", "hit"), [
    (cri.PodSandboxFilter(), True),
    (cri.PodSandboxFilter(id="abab"), True),
    (cri.PodSandboxFilter(id="cd"), False),
    (cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY)), True),
    (cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_NOTREADY)), False),
    (cri.PodSandboxFilter(label_selector={"app": "web"}), True),
    (cri.PodSandboxFilter(label_selector={"app": "web", "tier": "back"}), False),
])
def test_matches(flt: cri.PodSandboxFilter, hit: bool) -> None:
    assert t.matches(_rec(), flt) is hit


def test_metadata_round_trip() -> None:
    rec = _rec(netns_path="/run/x/netns/cni-1", cni_result={"ips": []})
    raw = t.metadata_json(rec)
    doc = json.loads(raw)
    assert doc["Version"] == "v1" and doc["Metadata"]["ID"] == rec.id
    assert doc["Metadata"]["Config"]["metadata"]["name"] == "web"
    back = t.record_from_metadata(raw, created_at=0)
    assert back.config == rec.config and back.netns_path == rec.netns_path and back.created_at == 123
    assert back.ip == rec.ip and back.additional_ips == rec.additional_ips and back.cni_result == {"ips": []}


def test_metadata_keeps_pod_level_resources() -> None:
    rec = _rec()
    rec.config.linux.overhead.cpu_shares = 10
    rec.config.linux.resources.CopyFrom(cri.LinuxContainerResources(cpu_quota=-1, memory_limit_in_bytes=1 << 30,
                                                                    unified={"a.b": "1"}))
    back = t.record_from_metadata(t.metadata_json(rec), created_at=0)
    assert back.config.linux.overhead == rec.config.linux.overhead
    assert back.config.linux.resources == rec.config.linux.resources


def test_container_labels() -> None:
    labels = t.container_labels(_rec().config)
    assert labels == {"app": "web", "tier": "front", "io.cri-containerd.kind": "sandbox"}


def test_resolv_conf() -> None:
    dns = cri.DNSConfig(servers=["10.0.0.10", "8.8.8.8"], searches=["ns.svc", "svc"], options=["ndots:5"])
    assert t.resolv_conf(dns) == "search ns.svc svc\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"


def test_cached_status_answer_with_appended_timestamp_parses() -> None:
    """PodSandboxStatus appends its timestamp to the kept answer's bytes: the result is the message
    with that timestamp, byte for byte what serializing it whole gives."""
    from criproxy.cri.sandbox_status import TIMESTAMP_TAG, _varint
    msg = cri.PodSandboxStatusResponse(status=cri.PodSandboxStatus(id="a" * 64, state=cri.SANDBOX_READY))
    for ts in (1, 127, 128, 1_764_000_000_123_456_789):
        raw = msg.SerializeToString() + TIMESTAMP_TAG + _varint(ts)
        got = cri.PodSandboxStatusResponse.FromString(raw)
        assert got.timestamp == ts and got.status.id == "a" * 64
        whole = cri.PodSandboxStatusResponse()
        whole.CopyFrom(msg)
        whole.timestamp = ts
        assert whole.SerializeToString() == raw
