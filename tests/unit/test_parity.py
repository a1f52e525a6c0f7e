"""criproxy.parity: spec decoding, normalisation, the JSON-path diff, the probe parser, the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from criproxy import errors
from criproxy.parity import Difference, Normaliser, diff, judge, parse_catalogue, parse_probe, probe_document
from criproxy.parity.diff import ABSENT, seccomp_digest
from criproxy.parity.probe import PROBE_RULES, cri_log_text, decode_caps
from criproxy.parity.spec import decode_spec

REPO = Path(__file__).resolve().parents[2]


def paths(ds: list[Difference]) -> list[str]:
    return [d.path for d in ds]


# -- spec ---------------------------------------------------------------------------------------


def test_decode_spec_reads_json_and_refuses_garbage() -> None:
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec",
                       value=b'{"ociVersion": "1.1.0"}')
    assert decode_spec(spec) == {"ociVersion": "1.1.0"}
    assert decode_spec(any_pb2.Any()) == {}
    with pytest.raises(errors.InvalidArgument):
        decode_spec(any_pb2.Any(value=b"not json"))
    with pytest.raises(errors.InvalidArgument):
        decode_spec(any_pb2.Any(value=b"[1, 2]"))


# -- normalise ----------------------------------------------------------------------------------


def test_normaliser_maps_ids_dirs_namespace_and_pids_to_placeholders() -> None:
    pod, ctr = "a" * 64, "b" * 64
    norm = Normaliser({pod: "<pod>", ctr: "<ctr.c>", "/run/x/netns/cni-1": "<netns>"},
                      dirs=["/var/lib/rt", "/run/rt/"], namespace="k8s.io")
    doc = {
        "hosts": f"/var/lib/rt/sandboxes/{pod}/hosts",
        "volume": f"/var/lib/rt/c/{ctr}/volumes/{'c' * 32}",
        "state": "/run/rt/bundles",
        "cgroup": f"/k8s.io/{ctr}",
        "ns": [{"type": "network", "path": "/run/x/netns/cni-1"}, {"type": "pid", "path": "/proc/4242/ns/pid"}],
        f"key-{pod}": 7,
        "unrelated": "/var/lib/rtx/file k8s.io.example",
    }
    assert norm(doc) == {
        "hosts": "<runtime-dir>/<pod>/hosts",
        "volume": "<runtime-dir>/<ctr.c>/volumes/<id>",
        "state": "<runtime-dir>/bundles",
        "cgroup": "/<ns>/<ctr.c>",
        "ns": [{"type": "network", "path": "<netns>"}, {"type": "pid", "path": "/proc/<pid>/ns/pid"}],
        "key-<pod>": 7,
        "unrelated": "/var/lib/rtx/file k8s.io.example",
    }


def test_normaliser_with_literals_adds_without_changing_the_original() -> None:
    base = Normaliser({"x1": "<x>"})
    more = base.with_literals({"y2": "<y>"})
    assert more("x1 y2") == "<x> <y>"
    assert base("x1 y2") == "<x> y2"


# -- diff ---------------------------------------------------------------------------------------


def test_diff_names_scalar_changes_and_one_sided_fields_by_path() -> None:
    a = {"process": {"cwd": "/", "args": ["sh", "-c"]}, "hostname": "p", "linux": {"sysctl": {"net.a.b": "1"}}}
    b = {"process": {"cwd": "/tmp", "args": ["sh"]}, "linux": {"sysctl": {"net.a.b": "2"}}, "extra": 1}
    ds = diff(a, b, "spec")
    assert [(d.path, d.left, d.right) for d in ds] == [
        ("spec.process.cwd", "/", "/tmp"),
        ("spec.process.args[1]", "-c", ABSENT),
        ("spec.hostname", "p", ABSENT),
        ("spec.linux.sysctl[net.a.b]", "1", "2"),
        ("spec.extra", ABSENT, 1),
    ]


def test_diff_absent_equals_empty_but_not_zero() -> None:
    a = {"readonly": False, "devices": [], "env": {}, "s": "", "n": None, "oomScoreAdj": 0}
    assert paths(diff(a, {})) == ["oomScoreAdj"]


def test_diff_keyed_and_set_lists_ignore_order() -> None:
    a = {"mounts": [{"destination": "/a", "options": ["ro", "rbind"]}, {"destination": "/b", "type": "bind"}],
         "process": {"capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"]},
                     "env": ["A=1", "PATH=/bin"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 5, "soft": 5}]},
         "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "p"}]}}
    b = {"mounts": [{"destination": "/b", "type": "bind"}, {"destination": "/a", "options": ["rbind", "rw"]}],
         "process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_RAW"]},
                     "env": ["PATH=/bin", "A=2"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 6, "soft": 5}]},
         "linux": {"namespaces": [{"type": "network", "path": "p"}, {"type": "pid"}]}}
    assert paths(diff(a, b)) == [
        "mounts[/a].options[ro]", "mounts[/a].options[rw]",
        "process.capabilities.bounding[CAP_KILL]", "process.capabilities.bounding[CAP_NET_RAW]",
        "process.env[A]", "process.rlimits[RLIMIT_NOFILE].hard",
    ]


def test_diff_keyed_list_with_duplicate_keys_and_odd_shapes() -> None:
    a = {"mounts": [{"destination": "/d"}, {"destination": "/d", "type": "tmpfs"}]}
    b = {"mounts": [{"destination": "/d"}]}
    assert paths(diff(a, b)) == ["mounts[/d#2]"]
    # items without the key fall back to comparison by index
    assert paths(diff({"mounts": ["x"]}, {"mounts": ["y"]})) == ["mounts[0]"]


def test_diff_summarises_seccomp_syscalls_in_one_difference() -> None:
    allow = {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}
    a = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow]}}}
    b = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}}
    ds = diff(a, b, "spec")
    assert paths(ds) == ["spec.linux.seccomp.syscalls"]
    left, right = ds[0].left, ds[0].right
    assert (left["count"], left["differing"], left["items"]) == (2, 0, [])
    assert (right["count"], right["differing"]) == (3, 1)
    assert right["items"] == ['clone SCMP_ACT_ALLOW {"args":[{"index":0,"op":"SCMP_CMP_EQ","value":1}]}']
    # the same rules in another order and grouping: no difference, same digest
    regrouped = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ALLOW"}, {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}}
    assert diff(a, regrouped) == []
    assert seccomp_digest(a) == seccomp_digest(regrouped) != seccomp_digest(b)
    assert seccomp_digest({}) == "none"


def test_difference_render_truncates_long_values() -> None:
    d = Difference("p", "x" * 1000, ABSENT)
    text = d.render(width=60)
    assert text.startswith("p: criproxy=\"xxx") and "builtin=<absent>" in text and len(text) < 120


# -- probe --------------------------------------------------------------------------------------

PROBE_OUTPUT = """\
### status
CapInh:\t0000000000000000
CapEff:\t00000000a80425fb
Seccomp:\t2
NoNewPrivs:\t1
### ulimit
-n: file descriptors                 1024
open files                      (-n) 20000
### sysctl
net/ipv4/ping_group_range=1\t0
### oom
-998
### links
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if17: <BROADCAST,UP,LOWER_UP> mtu 1500 state UP \\    link/ether 9a:3c:11:0b:22:ff brd ff:ff:ff:ff:ff:ff
9: veth1234@if3: <BROADCAST> mtu 1500
### mounts
611 520 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a/1/fs:/a/2/fs,upperdir=/a/3/fs,workdir=/a/3/work
612 611 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
613 611 0:56 /null /proc/kcore rw,nosuid shared:7 - tmpfs tmpfs rw,size=65536k
614 611 0:56 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k
### cgroup
4:memory:/kubepods/pod1/abc
0::/
### hosts
127.0.0.1\tlocalhost
10.1.2.3   parity
### dev
total 0
crw-rw-rw-    1 0        0           1,   3 Nov 30 06:00 null
lrwxrwxrwx    1 0        0                13 Nov 30 06:00 fd -> /proc/self/fd
drwxrwxrwt    2 0        0                40 Nov 30 06:00 shm
### stdio
0=pipe:[123456]
### end
"""


def test_parse_probe_and_document() -> None:
    sections = parse_probe("noise before\n" + PROBE_OUTPUT)
    assert list(sections)[:2] == ["status", "ulimit"] and sections["end"] == []
    doc = probe_document(sections)
    assert doc["complete"] is True
    assert doc["status"]["CapInh"] == []
    assert doc["status"]["CapEff"][:3] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
    assert "CAP_NET_RAW" in doc["status"]["CapEff"] and "CAP_SYS_ADMIN" not in doc["status"]["CapEff"]
    assert doc["status"]["Seccomp"] == "2"
    assert doc["ulimit"] == {"-n: file descriptors": "1024", "open files (-n)": "20000"}
    assert doc["sysctl"] == {"net/ipv4/ping_group_range": "1\t0"}
    assert doc["oom_score_adj"] == "-998"
    assert doc["links"] == {
        "lo": "<LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
        "eth0@if<N>": "<BROADCAST,UP,LOWER_UP> mtu 1500 state UP link/ether <mac> brd ff:ff:ff:ff:ff:ff",
    }
    assert doc["mounts"]["/"] == {"root": "/", "options": "rw,relatime", "propagation": ["master"],
                                  "fstype": "overlay", "source": "overlay",
                                  "super": "rw,lowerdir=<snapshots>,upperdir=<snapshots>,workdir=<snapshots>"}
    assert doc["mounts"]["/proc/kcore"]["propagation"] == ["shared"]
    assert doc["mounts"]["/proc/kcore#2"]["root"] == "/null"
    assert doc["cgroup"] == {"memory": "/kubepods/pod1/abc", "unified": "/"}
    assert doc["hosts"] == ["10.1.2.3 parity", "127.0.0.1 localhost"]
    assert doc["dev"] == {"null": "crw-rw-rw- 0:0 1,3", "fd -> /proc/self/fd": "lrwxrwxrwx 0:0",
                          "shm": "drwxrwxrwt 0:0"}
    assert doc["stdio"] == ["0=pipe:[N]"]


def test_probe_diff_names_capabilities() -> None:
    def doc(eff: str) -> dict[str, object]:
        return probe_document(parse_probe(f"### status\nCapEff:\t{eff}\n### end\n"))
    ds = diff(doc("00000000000020c0"), doc("00000000000000c0"), "probe", rules=PROBE_RULES)
    assert [(d.path, d.left, d.right) for d in ds] == [("probe.status.CapEff[CAP_NET_RAW]", "CAP_NET_RAW", ABSENT)]
    incomplete = probe_document(parse_probe("### status\n"))
    assert incomplete["complete"] is False


def test_decode_caps_keeps_unparsable_and_names_unknown_bits() -> None:
    assert decode_caps("zz") == ["zz"]
    assert decode_caps(hex(1 << 45)[2:]) == ["CAP_45"]


def test_cri_log_text_joins_partial_lines_and_drops_carriage_returns() -> None:
    log = ("2026-01-01T00:00:00Z stdout P hel\n2026-01-01T00:00:00Z stdout F lo\r\n"
           "2026-01-01T00:00:00Z stderr F \nbroken\n")
    assert cri_log_text(log) == "hello\n\n"


# -- catalogue ----------------------------------------------------------------------------------

CATALOGUE = """\
| path | cases | reason |
| --- | --- | --- |
| `spec.process.rlimits` | `*` | known gap: inherited rlimits |
| `spec.mounts[/dev/shm*` | `*/sandbox`, `other/x` | pause's shm |
not a row
| `probe.never` | `*` | never seen |
"""


def test_catalogue_parse_and_judge() -> None:
    cat = parse_catalogue(CATALOGUE)
    assert [(e.path, e.cases, e.line) for e in cat] == [
        ("spec.process.rlimits", ("*",), 3), ("spec.mounts[/dev/shm*", ("*/sandbox", "other/x"), 4),
        ("probe.never", ("*",), 6)]
    found = [("main/c", Difference("spec.process.rlimits", 1, ABSENT)),
             ("main/sandbox", Difference("spec.mounts[/dev/shm#2]", ABSENT, {})),
             ("main/c", Difference("spec.mounts[/dev/shm].type", "bind", "tmpfs")),   # wrong case
             ("main/c", Difference("spec.process.rlimitsX", 1, 2))]                   # pattern is anchored
    v = judge(found, cat)
    assert not v.ok
    assert [(c, d.path) for c, d in v.unexpected] == [("main/c", "spec.mounts[/dev/shm].type"),
                                                     ("main/c", "spec.process.rlimitsX")]
    assert [e.path for e in v.unused] == ["probe.never"]
    assert sum(len(x) for x in v.matched.values()) == 2


def test_catalogue_row_without_reason_is_an_error() -> None:
    with pytest.raises(ValueError, match="no reason"):
        parse_catalogue("| `spec.x` | `*` |  |\n")


def test_project_catalogue_parses_and_every_row_has_a_real_reason() -> None:
    cat = parse_catalogue((REPO / "docs" / "parity.md").read_text())
    assert len(cat) >= 1
    for e in cat:
        assert len(e.reason) > 20, e
    assert json.dumps([e.path for e in cat])  # patterns are plain strings


def test_catalogue_release_column_scopes_entries() -> None:
    cat = parse_catalogue("| path | cases | containerd | reason |\n| --- | --- | --- | --- |\n"
                          "| `spec.a`, `spec.b` | `*` | `1.6` | only the old release differs here |\n"
                          "| `spec.c` | `main/*` | 1.7, 2.1 | only the newer releases differ here |\n"
                          "| `spec.d` | `*` | every release differs here, no column |\n")
    assert [(e.path, e.releases) for e in cat] == [("spec.a", ("1.6",)), ("spec.b", ("1.6",)),
                                                   ("spec.c", ("1.7", "2.1")), ("spec.d", ("*",))]
    found = [("main/x", Difference("spec.a", 1, 2)), ("main/x", Difference("spec.d", 1, 2))]
    v16 = judge(found, cat, "1.6")
    assert v16.unexpected == [] and [e.path for e in v16.unused] == ["spec.b"]
    v21 = judge(found, cat, "2.1")
    assert [d.path for _c, d in v21.unexpected] == ["spec.a"] and [e.path for e in v21.unused] == ["spec.c"]
